//! The training step of the AE, denoising AE and VAE: GPU noise keyed by (seed, step), the loss,
//! and the MSE, reconstruction NLL and KL summed on the GPU.

use std::fmt;

use crate::data::{Batch, Dataset};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::models::autoencoder::{Autoencoder, AutoencoderConfig};
use crate::nn::ParamStore;
use crate::tensor::Tensor;
use crate::train::PixelInput;

use super::{
    check_fits, check_image_data, first_images, MetricSums, MetricTerms, RunState, Snapshot,
    StepOutput, TrainStep, Trainer,
};

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

impl fmt::Display for AeMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} loss {:.4} recon MSE {:.5}",
            self.step, self.loss, self.recon_mse
        )?;
        if let (Some(r), Some(k), Some(e)) = (self.recon_nll, self.kl, self.neg_elbo()) {
            write!(f, " | -ELBO {e:.1} = recon {r:.1} + KL {k:.2} nats/image")?;
        }
        Ok(())
    }
}

/// An AE, DAE or VAE in training: the model, its input buffer and the data variance.
pub struct AeTask {
    /// The model.
    pub model: Autoencoder,
    /// Variance of training pixels in [0, 1].
    pub variance: f32,
    input: PixelInput,
    last_recon: Option<Tensor>,
}

/// An AE, DAE or VAE with its run state.
pub type AeTrainer = Trainer<AeTask>;

impl AeTask {
    fn new(gpu: &Gpu, model: Autoencoder, batch: usize, variance: f32) -> Result<Self> {
        let [c, h, w] = model.config.image_shape;
        check_fits(
            gpu,
            batch * (model.config.hidden / 2) * (h / 2) * (w / 2) * 4,
        )?;
        Ok(Self {
            model,
            variance,
            input: PixelInput::new(gpu, &[batch, c, h, w])?,
            last_recon: None,
        })
    }
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
        let run = RunState::new(gpu, seed, lr, batch)?;
        let model = Autoencoder::new(gpu, config, seed)?;
        let task = AeTask::new(gpu, model, batch, variance)?;
        Ok(Self { task, run })
    }
}

impl TrainStep for AeTask {
    type Data = dyn Dataset;
    type Metrics = AeMetrics;
    const METRICS_HEADER: &'static str = "step,loss,recon_mse,recon_nll,kl,neg_elbo,images_per_s";
    const CURVES: &'static [(usize, &'static str)] = &[
        (1, "loss vs step"),
        (2, "reconstruction MSE vs step"),
        (5, "negative ELBO (nats per image) vs step"),
    ];

    fn params(&self) -> &ParamStore {
        &self.model.params
    }

    fn check_data(&self, data: &dyn Dataset) -> Result<()> {
        check_image_data(data, self.model.config.image_shape)
    }

    fn forward(&mut self, batch: &Batch<u8>, run: &RunState) -> Result<StepOutput> {
        let input = self.input.upload(&batch.inputs)?;
        let out = self
            .model
            .forward(input, run.noise_key(), self.variance, true);
        self.last_recon = Some(out.recon.detach());
        Ok(StepOutput {
            loss: out.loss,
            metrics: MetricTerms::from([Some(out.mse), out.recon_nll, out.kl]),
        })
    }

    fn metrics(&mut self, sums: &MetricSums, step: u64) -> Result<AeMetrics> {
        let variational = self.model.config.variational();
        Ok(AeMetrics {
            step,
            loss: sums.mean(0, 0),
            recon_mse: sums.mean(1, 0),
            recon_nll: variational.then(|| sums.mean(2, 0)),
            kl: variational.then(|| sums.mean(3, 0)),
        })
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

    fn snapshot(&self, count: usize) -> Result<Option<Snapshot>> {
        let shape = self.model.config.image_shape;
        first_images(self.input.values(), self.last_recon.as_ref(), count, shape).map(Some)
    }

    fn write_state(&self, ck: &mut Checkpoint) -> Result<()> {
        self.model.write_state(ck)?;
        ck.set("variance", self.variance);
        Ok(())
    }

    fn from_state(gpu: &Gpu, ck: &Checkpoint, run: &RunState) -> Result<Self> {
        let model = Autoencoder::from_checkpoint(gpu, ck)?;
        Self::new(gpu, model, run.batch, ck.meta_parse("variance")?)
    }
}
