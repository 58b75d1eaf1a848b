//! Training of the VQ-VAE: forward, backward, Adam and the EMA codebook update in one recorded step.

use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::gpu::timing::GpuTimer;
use crate::gpu::Gpu;
use crate::models::vqvae::{VqVae, VqVaeConfig};
use crate::nn::Adam;
use crate::ops::{elementwise, reduce};
use crate::tensor::Tensor;

use super::{
    check_setup, first_images, plot_columns, restore_run, run_settings, save_run, ImageTrainer,
};

const METRICS_HEADER: &str = "step,loss,recon_mse,perplexity,codes_used,restarts,images_per_s";

/// Offsets (in floats, 256-byte aligned) of the running sums in the metrics buffer.
const SLOT_LOSS: usize = 0;
const SLOT_RECON: usize = 64;
const SLOT_STATS: usize = 128; // perplexity, share of codes used
const SLOT_RESTARTS: usize = 192;
const METRICS_LEN: usize = 256;

/// Averages of the training metrics over the steps since the last read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepMetrics {
    /// The step reached.
    pub step: u64,
    /// Total loss (reconstruction / data variance + VQ loss).
    pub loss: f32,
    /// Reconstruction MSE in model units ([-0.5, 0.5] pixels, the same as [0, 1] pixels).
    pub recon_mse: f32,
    /// Perplexity of code usage per batch.
    pub perplexity: f32,
    /// Share of the codebook used per batch.
    pub codes_used: f32,
    /// Codes restarted since the last read.
    pub restarts: f32,
}

/// A VQ-VAE with its optimizer, training step and GPU-side metrics.
pub struct VqVaeTrainer {
    /// The model.
    pub model: VqVae,
    /// Its optimizer.
    pub adam: Adam,
    /// Steps taken.
    pub step: u64,
    /// Seed of the initialisation and of the data order.
    pub seed: u64,
    /// Images per step.
    pub batch: usize,
    /// [C, H, W] of the images.
    pub image_shape: [usize; 3],
    /// Variance of training pixels in [0, 1]; the reconstruction loss is MSE / variance.
    pub variance: f32,
    input: Tensor,
    metrics: Tensor,
    steps_in_metrics: u64,
    last_recon: Option<Tensor>,
}

impl VqVaeTrainer {
    /// A fresh model and optimizer.
    pub fn new(
        gpu: &Gpu,
        config: VqVaeConfig,
        seed: u64,
        lr: f32,
        batch: usize,
        image_shape: [usize; 3],
        variance: f32,
    ) -> Result<Self> {
        let model = VqVae::new(gpu, config, seed)?;
        Self::with_model(gpu, model, seed, lr, batch, image_shape, variance)
    }

    fn with_model(
        gpu: &Gpu,
        model: VqVae,
        seed: u64,
        lr: f32,
        batch: usize,
        image_shape: [usize; 3],
        variance: f32,
    ) -> Result<Self> {
        let [c, h, w] = image_shape;
        if c != model.config.in_channels
            || !h.is_multiple_of(4)
            || !w.is_multiple_of(4)
            || h < 4
            || w < 4
        {
            return Err(Error::InvalidArgument(format!(
                "images of {c}x{h}x{w} do not fit a model with {} input channels (height and width must be multiples of 4)",
                model.config.in_channels
            )));
        }
        // the largest activation must fit the adapter's binding limit: check before the first step
        let largest = batch * (model.config.hidden / 2) * (h / 2) * (w / 2) * 4;
        check_setup(gpu, batch, lr, largest)?;
        let input = Tensor::zeros(gpu, &[batch, c, h, w]);
        let metrics = Tensor::zeros(gpu, &[METRICS_LEN]);
        Ok(Self {
            model,
            adam: Adam::new(lr),
            step: 0,
            seed,
            batch,
            image_shape,
            variance,
            input,
            metrics,
            steps_in_metrics: 0,
            last_recon: None,
        })
    }

    /// Records one training step on `images` ([B, C, H, W] in [-0.5, 0.5]); nothing is read back.
    pub fn train_step(&mut self, images: &[f32]) -> Result<()> {
        self.timed_step(images, None)
    }

    /// A training step with a timer mark before it and after each phase: encoder, quantizer,
    /// decoder and loss, backward, optimizer (6 marks). Without a timer it is `train_step`.
    pub fn timed_step(&mut self, images: &[f32], mut timer: Option<&mut GpuTimer>) -> Result<()> {
        let gpu = self.input.gpu().clone();
        let mark = |t: &mut Option<&mut GpuTimer>| t.as_mut().map_or(Ok(()), |t| t.mark(&gpu));
        self.input.write(images)?;
        self.model.params.zero_grad();
        mark(&mut timer)?;
        let z = self.model.encode(&self.input);
        mark(&mut timer)?;
        let quantized = self.model.quantizer.forward(&z, true);
        mark(&mut timer)?;
        let recon = self.model.decode(&quantized.z_q);
        let recon_mse = reduce::mse_loss(&recon, &self.input);
        let loss = recon_mse.scale(1.0 / self.variance).add(&quantized.loss);
        mark(&mut timer)?;
        loss.backward();
        mark(&mut timer)?;
        self.adam.step(&self.model.params);
        mark(&mut timer)?;
        let slot = |offset: usize, len: usize| self.metrics.view(offset, &[len], None);
        elementwise::accumulate(&slot(SLOT_LOSS, 1), &loss.detach(), 1.0);
        elementwise::accumulate(&slot(SLOT_RECON, 1), &recon_mse.detach(), 1.0);
        elementwise::accumulate(&slot(SLOT_STATS, 2), &quantized.stats, 1.0);
        elementwise::accumulate(&slot(SLOT_RESTARTS, 1), &quantized.restarted, 1.0);
        self.steps_in_metrics += 1;
        self.last_recon = Some(recon.detach());
        self.step += 1;
        Ok(())
    }

    /// Reads back and resets the metrics (a sync point); `None` if no step ran since the last read.
    pub fn take_metrics(&mut self) -> Result<Option<StepMetrics>> {
        if self.steps_in_metrics == 0 {
            return Ok(None);
        }
        let m = self.metrics.to_vec()?;
        elementwise::fill(&self.metrics, 0.0);
        let n = self.steps_in_metrics as f32;
        self.steps_in_metrics = 0;
        let values = StepMetrics {
            step: self.step,
            loss: m[SLOT_LOSS] / n,
            recon_mse: m[SLOT_RECON] / n,
            perplexity: m[SLOT_STATS] / n,
            codes_used: m[SLOT_STATS + 1] / n,
            restarts: m[SLOT_RESTARTS],
        };
        if !values.loss.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "the loss became {} at step {}: lower --lr",
                values.loss, self.step
            )));
        }
        Ok(Some(values))
    }

    /// The last training batch and its reconstruction, `count` images each (a sync point).
    pub fn last_images(&self, count: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        first_images(&self.input, self.last_recon.as_ref(), count)
    }

    /// The complete training state: the model (PyTorch names, EMA statistics, sizes), the Adam
    /// moments, and step, seed and optimizer settings for an exact resume.
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
        ck.set_dims("image_shape", &self.image_shape);
        ck.set("variance", self.variance);
        Ok(ck)
    }

    /// Rebuilds the trainer exactly as it was when `ck` was taken.
    pub fn from_checkpoint(gpu: &Gpu, ck: &Checkpoint) -> Result<Self> {
        let model = VqVae::from_checkpoint(gpu, ck)?;
        let (seed, lr, batch) = run_settings(ck)?;
        let image_shape = ck.dims("image_shape")?;
        let variance = ck.meta_parse("variance")?;
        let mut t = Self::with_model(gpu, model, seed, lr, batch, image_shape, variance)?;
        (t.adam, t.step) = restore_run(ck, &t.model.params)?;
        Ok(t)
    }
}

impl ImageTrainer for VqVaeTrainer {
    type Metrics = StepMetrics;
    const METRICS_HEADER: &'static str = METRICS_HEADER;

    fn progress(&self) -> (u64, usize, u64, [usize; 3]) {
        (self.step, self.batch, self.seed, self.image_shape)
    }

    fn train_step(&mut self, images: &[f32]) -> Result<()> {
        VqVaeTrainer::train_step(self, images)
    }

    fn take_metrics(&mut self) -> Result<Option<StepMetrics>> {
        VqVaeTrainer::take_metrics(self)
    }

    fn csv_line(m: &StepMetrics, rate: f64) -> String {
        format!(
            "{},{:.6},{:.6},{:.3},{:.4},{},{rate:.1}",
            m.step, m.loss, m.recon_mse, m.perplexity, m.codes_used, m.restarts
        )
    }

    fn last_images(&self, count: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        VqVaeTrainer::last_images(self, count)
    }

    fn checkpoint(&self) -> Result<Checkpoint> {
        VqVaeTrainer::checkpoint(self)
    }

    fn plot(csv: &Path, png: &Path) -> Result<()> {
        plot_metrics(csv, png)
    }
}

/// Draws loss, reconstruction MSE and perplexity from a metrics CSV into a PNG.
pub fn plot_metrics(csv: &Path, png: &Path) -> Result<()> {
    plot_columns(
        csv,
        png,
        &[
            (1, "loss (recon / variance + vq) vs step"),
            (2, "reconstruction MSE vs step"),
            (3, "code perplexity vs step"),
        ],
    )
}
