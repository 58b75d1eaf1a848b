//! The training step of the VQ-VAE: forward, loss (reconstruction / variance + VQ loss) and the EMA
//! codebook update, with perplexity, codebook use and restarts summed on the GPU.

use std::fmt;

use crate::data::{Batch, Dataset};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::models::vqvae::{VqVae, VqVaeConfig};
use crate::nn::ParamStore;

use super::{
    ImageInput, MetricSums, MetricTerms, RunState, Snapshot, StepOutput, TrainStep, Trainer,
};

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

impl fmt::Display for StepMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} loss {:.4} recon {:.5} perplexity {:.1} used {:.0}% restarts {}",
            self.step,
            self.loss,
            self.recon_mse,
            self.perplexity,
            self.codes_used * 100.0,
            self.restarts
        )
    }
}

/// A VQ-VAE in training: the model, its input buffer and the data variance.
pub struct VqVaeTask {
    /// The model.
    pub model: VqVae,
    /// The input buffer, the image shape and the data variance.
    pub images: ImageInput,
}

/// A VQ-VAE with its run state.
pub type VqVaeTrainer = Trainer<VqVaeTask>;

impl VqVaeTask {
    fn new(
        gpu: &Gpu,
        model: VqVae,
        batch: usize,
        image_shape: [usize; 3],
        variance: f32,
    ) -> Result<Self> {
        model.config.check_images(image_shape)?;
        let images = ImageInput::new(gpu, batch, image_shape, variance, model.config.hidden)?;
        Ok(Self { model, images })
    }
}

impl VqVaeTrainer {
    /// A fresh model and optimizer for images of `image_shape`.
    pub fn new(
        gpu: &Gpu,
        config: VqVaeConfig,
        seed: u64,
        lr: f32,
        batch: usize,
        image_shape: [usize; 3],
        variance: f32,
    ) -> Result<Self> {
        let run = RunState::new(gpu, seed, lr, batch)?;
        let model = VqVae::new(gpu, config, seed)?;
        let task = VqVaeTask::new(gpu, model, batch, image_shape, variance)?;
        Ok(Self { task, run })
    }
}

impl TrainStep for VqVaeTask {
    type Data = dyn Dataset;
    type Metrics = StepMetrics;
    const METRICS_HEADER: &'static str =
        "step,loss,recon_mse,perplexity,codes_used,restarts,images_per_s";
    const CURVES: &'static [(usize, &'static str)] = &[
        (1, "loss (recon / variance + vq) vs step"),
        (2, "reconstruction MSE vs step"),
        (3, "code perplexity vs step"),
    ];

    fn params(&self) -> &ParamStore {
        &self.model.params
    }

    fn check_data(&self, data: &dyn Dataset) -> Result<()> {
        self.images.check_data(data)
    }

    fn forward(&mut self, batch: &Batch<u8>, _: &RunState) -> Result<StepOutput> {
        let input = self.images.upload(batch)?;
        let out = self.model.forward(input, true);
        let (loss, recon_mse) = VqVae::objective(input, &out, self.images.variance);
        self.images.keep(&out.recon);
        let q = out.quantized;
        Ok(StepOutput {
            loss,
            metrics: MetricTerms::from([Some(recon_mse), Some(q.stats), Some(q.restarted)]),
        })
    }

    fn metrics(&mut self, sums: &MetricSums, step: u64) -> Result<StepMetrics> {
        Ok(StepMetrics {
            step,
            loss: sums.mean(0, 0),
            recon_mse: sums.mean(1, 0),
            perplexity: sums.mean(2, 0),
            codes_used: sums.mean(2, 1),
            restarts: sums.sum(3, 0),
        })
    }

    fn csv_line(m: &StepMetrics, rate: f64) -> String {
        format!(
            "{},{:.6},{:.6},{:.3},{:.4},{},{rate:.1}",
            m.step, m.loss, m.recon_mse, m.perplexity, m.codes_used, m.restarts
        )
    }

    fn snapshot(&self, count: usize) -> Result<Option<Snapshot>> {
        self.images.snapshot(count)
    }

    fn write_state(&self, ck: &mut Checkpoint) -> Result<()> {
        self.model.write_state(ck)?;
        self.images.write_state(ck);
        Ok(())
    }

    fn from_state(gpu: &Gpu, ck: &Checkpoint, run: &RunState) -> Result<Self> {
        let model = VqVae::from_checkpoint(gpu, ck)?;
        let (image_shape, variance) = ImageInput::recorded(ck)?;
        Self::new(gpu, model, run.batch, image_shape, variance)
    }
}
