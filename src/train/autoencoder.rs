//! Training of the AE, denoising AE and VAE: one recorded step, metrics summed on the GPU and read
//! back only when logging, complete checkpoints for an exact resume.

use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::autoencoder::{Autoencoder, AutoencoderConfig};
use crate::nn::Adam;
use crate::ops::elementwise;
use crate::tensor::Tensor;

use super::{
    check_setup, first_images, plot_columns, restore_run, run_settings, save_run, ImageTrainer,
};

const METRICS_HEADER: &str = "step,loss,recon_mse,recon_nll,kl,neg_elbo,images_per_s";
/// Slots (256-byte aligned) of the running sums: loss, MSE, reconstruction NLL, KL.
const SLOTS: [usize; 4] = [0, 64, 128, 192];

/// Averages of the training metrics over the steps since the last read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AeMetrics {
    /// The step reached.
    pub step: u64,
    /// The minimised loss.
    pub loss: f32,
    /// Reconstruction MSE in [0, 1] pixel units.
    pub recon_mse: f32,
    /// VAE: reconstruction NLL per image (nats).
    pub recon_nll: Option<f32>,
    /// VAE: KL per image (nats).
    pub kl: Option<f32>,
}

impl AeMetrics {
    /// VAE: the negative ELBO per image, reconstruction NLL + KL (nats).
    pub fn neg_elbo(&self) -> Option<f32> {
        Some(self.recon_nll? + self.kl?)
    }
}

/// An AE, DAE or VAE with its optimizer, training step and GPU-side metrics.
pub struct AeTrainer {
    /// The model.
    pub model: Autoencoder,
    /// Its optimizer.
    pub adam: Adam,
    /// Steps taken.
    pub step: u64,
    /// Seed of the initialisation, the data order and the GPU noise.
    pub seed: u64,
    /// Images per step.
    pub batch: usize,
    /// Variance of training pixels in [0, 1].
    pub variance: f32,
    input: Tensor,
    metrics: Tensor,
    steps_in_metrics: u64,
    last_recon: Option<Tensor>,
}

impl AeTrainer {
    /// A fresh model and optimizer.
    pub fn new(
        gpu: &Gpu,
        config: AutoencoderConfig,
        seed: u64,
        lr: f32,
        batch: usize,
        variance: f32,
    ) -> Result<Self> {
        let model = Autoencoder::new(gpu, config, seed)?;
        Self::with_model(gpu, model, seed, lr, batch, variance)
    }

    fn with_model(
        gpu: &Gpu,
        model: Autoencoder,
        seed: u64,
        lr: f32,
        batch: usize,
        variance: f32,
    ) -> Result<Self> {
        let [c, h, w] = model.config.image_shape;
        let largest = batch * (model.config.hidden / 2) * (h / 2) * (w / 2) * 4;
        check_setup(gpu, batch, lr, largest)?;
        Ok(Self {
            adam: Adam::new(lr),
            step: 0,
            seed,
            batch,
            variance,
            input: Tensor::zeros(gpu, &[batch, c, h, w]),
            metrics: Tensor::zeros(gpu, &[256]),
            steps_in_metrics: 0,
            last_recon: None,
            model,
        })
    }

    /// The complete training state: the model, the Adam moments, step, seed, batch, variance.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let mut ck = Checkpoint::default();
        self.model.write_state(&mut ck)?;
        let (step, seed) = (self.step, self.seed);
        save_run(
            &mut ck,
            &self.adam,
            &self.model.params,
            step,
            seed,
            self.batch,
        )?;
        ck.set("variance", self.variance);
        Ok(ck)
    }

    /// Rebuilds the trainer exactly as it was when `ck` was taken.
    pub fn from_checkpoint(gpu: &Gpu, ck: &Checkpoint) -> Result<Self> {
        let model = Autoencoder::from_checkpoint(gpu, ck)?;
        let (seed, lr, batch) = run_settings(ck)?;
        let variance = ck.meta_parse("variance")?;
        let mut t = Self::with_model(gpu, model, seed, lr, batch, variance)?;
        (t.adam, t.step) = restore_run(ck, &t.model.params)?;
        Ok(t)
    }
}

impl ImageTrainer for AeTrainer {
    type Metrics = AeMetrics;
    const METRICS_HEADER: &'static str = METRICS_HEADER;

    fn progress(&self) -> (u64, usize, u64, [usize; 3]) {
        (
            self.step,
            self.batch,
            self.seed,
            self.model.config.image_shape,
        )
    }

    fn train_step(&mut self, images: &[f32]) -> Result<()> {
        self.input.write(images)?;
        self.model.params.zero_grad();
        // the GPU noise of step s is keyed by (seed, s), so a resumed run draws the same noise
        let key = self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.step;
        let out = self.model.forward(&self.input, key, self.variance, true);
        out.loss.backward();
        self.adam.step(&self.model.params);
        let terms = [
            Some(&out.loss),
            Some(&out.mse),
            out.recon_nll.as_ref(),
            out.kl.as_ref(),
        ];
        for (slot, term) in SLOTS.iter().zip(terms) {
            if let Some(t) = term {
                let sum = self.metrics.view(*slot, &[1], None);
                elementwise::accumulate(&sum, &t.detach(), 1.0);
            }
        }
        self.last_recon = Some(out.recon.detach());
        self.steps_in_metrics += 1;
        self.step += 1;
        Ok(())
    }

    fn take_metrics(&mut self) -> Result<Option<AeMetrics>> {
        if self.steps_in_metrics == 0 {
            return Ok(None);
        }
        let m = self.metrics.to_vec()?;
        elementwise::fill(&self.metrics, 0.0);
        let n = self.steps_in_metrics as f32;
        self.steps_in_metrics = 0;
        let variational = self.model.config.variational();
        let values = AeMetrics {
            step: self.step,
            loss: m[SLOTS[0]] / n,
            recon_mse: m[SLOTS[1]] / n,
            recon_nll: variational.then(|| m[SLOTS[2]] / n),
            kl: variational.then(|| m[SLOTS[3]] / n),
        };
        if !values.loss.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "the loss became {} at step {}: lower --lr",
                values.loss, self.step
            )));
        }
        Ok(Some(values))
    }

    fn csv_line(m: &AeMetrics, rate: f64) -> String {
        let opt = |v: Option<f32>| v.map_or(String::new(), |v| format!("{v:.4}"));
        format!(
            "{},{:.6},{:.6},{},{},{},{rate:.1}",
            m.step,
            m.loss,
            m.recon_mse,
            opt(m.recon_nll),
            opt(m.kl),
            opt(m.neg_elbo())
        )
    }

    fn last_images(&self, count: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        first_images(&self.input, self.last_recon.as_ref(), count)
    }

    fn checkpoint(&self) -> Result<Checkpoint> {
        AeTrainer::checkpoint(self)
    }

    fn plot(csv: &Path, png: &Path) -> Result<()> {
        plot_columns(
            csv,
            png,
            &[
                (1, "loss vs step"),
                (2, "reconstruction MSE vs step"),
                (5, "negative ELBO (nats per image) vs step"),
            ],
        )
    }
}
