//! The training step of VQ-VAE-2: forward through both levels, loss (reconstruction / variance +
//! both quantizers' losses) and both EMA codebook updates, with each level's perplexity, codebook
//! use and restarts summed on the GPU.

use std::fmt;

use crate::data::{Batch, Dataset};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::models::vqvae::VqVaeConfig;
use crate::models::vqvae2::{self, VqVae2};
use crate::nn::ParamStore;
use crate::ops::elementwise::concat_channels;
use crate::tensor::Tensor;

use super::{
    ImageInput, MetricSums, MetricTerms, RunState, Snapshot, StepOutput, TrainStep, Trainer,
};

/// One level's code statistics, averaged over the steps since the last read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LevelMetrics {
    /// Perplexity of code usage per batch.
    pub perplexity: f32,
    /// Share of the codebook used per batch.
    pub codes_used: f32,
    /// Codes restarted since the last read.
    pub restarts: f32,
}

/// Averages of the training metrics over the steps since the last read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Vqvae2Metrics {
    /// The step reached.
    pub step: u64,
    /// Total loss (reconstruction / data variance + both VQ losses).
    pub loss: f32,
    /// Reconstruction MSE in model units ([-0.5, 0.5] pixels, the same as [0, 1] pixels).
    pub recon_mse: f32,
    /// The top level's codes.
    pub top: LevelMetrics,
    /// The bottom level's codes.
    pub bottom: LevelMetrics,
}

impl fmt::Display for Vqvae2Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} loss {:.4} recon {:.5}",
            self.step, self.loss, self.recon_mse
        )?;
        for (name, level) in [("top", self.top), ("bottom", self.bottom)] {
            write!(
                f,
                " | {name}: perplexity {:.1} used {:.0}% restarts {}",
                level.perplexity,
                level.codes_used * 100.0,
                level.restarts
            )?;
        }
        Ok(())
    }
}

/// A VQ-VAE-2 in training: the model, its input buffer and the data variance.
pub struct Vqvae2Task {
    /// The model.
    pub model: VqVae2,
    /// The input buffer, the image shape and the data variance.
    pub images: ImageInput,
}

/// A VQ-VAE-2 with its run state.
pub type Vqvae2Trainer = Trainer<Vqvae2Task>;

impl Vqvae2Task {
    fn new(
        gpu: &Gpu,
        model: VqVae2,
        batch: usize,
        image_shape: [usize; 3],
        variance: f32,
    ) -> Result<Self> {
        vqvae2::check_images(&model.config, image_shape)?;
        let images = ImageInput::new(gpu, batch, image_shape, variance, model.config.hidden)?;
        Ok(Self { model, images })
    }
}

impl Vqvae2Trainer {
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
        let model = VqVae2::new(gpu, config, seed)?;
        let task = Vqvae2Task::new(gpu, model, batch, image_shape, variance)?;
        Ok(Self { task, run })
    }
}

/// `a` [n] and `b` [n] as one [2n] tensor.
fn join(a: &Tensor, b: &Tensor) -> Tensor {
    let n = a.numel();
    concat_channels(&a.reshape(&[1, n]), &b.reshape(&[1, n])).reshape(&[2 * n])
}

impl TrainStep for Vqvae2Task {
    type Data = dyn Dataset;
    type Metrics = Vqvae2Metrics;
    const METRICS_HEADER: &'static str = "step,loss,recon_mse,top_perplexity,top_codes_used,\
        top_restarts,bottom_perplexity,bottom_codes_used,bottom_restarts,images_per_s";
    const CURVES: &'static [(usize, &'static str)] = &[
        (1, "loss (recon / variance + vq) vs step"),
        (2, "reconstruction MSE vs step"),
        (3, "top code perplexity vs step"),
        (6, "bottom code perplexity vs step"),
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
        let (loss, recon_mse) = VqVae2::objective(input, &out, self.images.variance);
        self.images.keep(&out.recon);
        Ok(StepOutput {
            loss,
            metrics: MetricTerms::from([
                Some(recon_mse),
                Some(join(&out.top.stats, &out.bottom.stats)),
                Some(join(&out.top.restarted, &out.bottom.restarted)),
            ]),
        })
    }

    fn metrics(&mut self, sums: &MetricSums, step: u64) -> Result<Vqvae2Metrics> {
        let level = |i: usize| LevelMetrics {
            perplexity: sums.mean(2, 2 * i),
            codes_used: sums.mean(2, 2 * i + 1),
            restarts: sums.sum(3, i),
        };
        Ok(Vqvae2Metrics {
            step,
            loss: sums.mean(0, 0),
            recon_mse: sums.mean(1, 0),
            top: level(0),
            bottom: level(1),
        })
    }

    fn csv_line(m: &Vqvae2Metrics, rate: f64) -> String {
        let level =
            |l: &LevelMetrics| format!("{:.3},{:.4},{}", l.perplexity, l.codes_used, l.restarts);
        format!(
            "{},{:.6},{:.6},{},{},{rate:.1}",
            m.step,
            m.loss,
            m.recon_mse,
            level(&m.top),
            level(&m.bottom)
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
        let model = VqVae2::from_checkpoint(gpu, ck)?;
        let (image_shape, variance) = ImageInput::recorded(ck)?;
        Self::new(gpu, model, run.batch, image_shape, variance)
    }
}
