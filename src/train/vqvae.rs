//! Training of the VQ-VAE: forward, backward, Adam and the EMA codebook update in one recorded step.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::Checkpoint;
use crate::data::{Dataset, Loader};
use crate::error::{Error, Result};
use crate::gpu::timing::GpuTimer;
use crate::gpu::Gpu;
use crate::models::vqvae::{VqVae, VqVaeConfig};
use crate::nn::Adam;
use crate::ops::{elementwise, reduce};
use crate::tensor::Tensor;

use super::{
    append_csv, every, read_csv, save_comparison, TrainOptions, CHECKPOINT_FILE, METRICS_FILE,
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
        if batch == 0 {
            return Err(Error::InvalidArgument("--batch must be at least 1".into()));
        }
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
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "--lr must be a positive number, got {lr}"
            )));
        }
        let input = Tensor::zeros(gpu, &[batch, c, h, w]);
        let metrics = Tensor::zeros(gpu, &[METRICS_LEN]);
        let trainer = Self {
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
        };
        // the largest activation must fit the adapter's binding limit: check before the first step
        let largest = batch * (trainer.model.config.hidden / 2) * (h / 2) * (w / 2) * 4;
        if largest as u64 > gpu.max_binding_bytes() {
            return Err(Error::BufferTooLarge {
                requested: largest as u64,
                limit: gpu.max_binding_bytes(),
                which: "max_storage_buffer_binding_size",
            });
        }
        Ok(trainer)
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
        let per_image: usize = self.image_shape.iter().product();
        let count = count.min(self.batch);
        let original = self.input.to_vec()?;
        let recon = match &self.last_recon {
            Some(r) => r.to_vec()?,
            None => original.clone(),
        };
        Ok((
            original[..count * per_image].to_vec(),
            recon[..count * per_image].to_vec(),
        ))
    }

    /// The complete training state: the model (PyTorch names, EMA statistics, sizes), the Adam
    /// moments, and step, seed and optimizer settings for an exact resume.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let mut ck = Checkpoint::default();
        self.model.write_state(&mut ck)?;
        self.adam.write_state(&self.model.params, &mut ck)?;
        ck.set("step", self.step);
        ck.set("seed", self.seed);
        ck.set("batch", self.batch);
        ck.set(
            "image_shape",
            self.image_shape.map(|v| v.to_string()).join(","),
        );
        ck.set("variance", self.variance);
        Ok(ck)
    }

    /// Rebuilds the trainer exactly as it was when `ck` was taken.
    pub fn from_checkpoint(gpu: &Gpu, ck: &Checkpoint) -> Result<Self> {
        let model = VqVae::from_checkpoint(gpu, ck)?;
        let image_shape = parse_image_shape(ck)?;
        let mut t = Self::with_model(
            gpu,
            model,
            ck.meta_parse("seed")?,
            ck.meta_parse("lr")?,
            ck.meta_parse("batch")?,
            image_shape,
            ck.meta_parse("variance")?,
        )?;
        t.adam = Adam::read_state(&t.model.params, ck)?;
        t.step = ck.meta_parse("step")?;
        Ok(t)
    }
}

/// The image shape a training checkpoint records.
fn parse_image_shape(ck: &Checkpoint) -> Result<[usize; 3]> {
    let raw = ck.meta("image_shape")?;
    let dims: Vec<usize> = raw.split(',').filter_map(|v| v.parse().ok()).collect();
    match dims[..] {
        [c, h, w] => Ok([c, h, w]),
        _ => Err(Error::Checkpoint {
            path: ck.path.display().to_string(),
            message: format!("image_shape {raw:?} is not C,H,W"),
        }),
    }
}

/// Trains `trainer` on `data` until `opts.steps`, writing metrics, grids and checkpoints to `opts.out`.
/// `report` receives every metrics read-back (the CLI draws its progress bar from it).
pub fn run(
    trainer: &mut VqVaeTrainer,
    data: Arc<dyn Dataset>,
    opts: &TrainOptions,
    report: &mut dyn FnMut(&StepMetrics, f64),
) -> Result<()> {
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let metrics_path = opts.out.join(METRICS_FILE);
    let checkpoint_path = opts.out.join(CHECKPOINT_FILE);
    let mut loader = Loader::new(data, trainer.batch, trainer.seed, trainer.step, opts.steps);
    let mut since = Instant::now();
    let mut images = 0usize;
    while trainer.step < opts.steps {
        let batch = loader
            .next_batch()
            .ok_or_else(|| Error::Dataset("the batch loader stopped early".into()))?;
        trainer.train_step(&batch.images)?;
        images += trainer.batch;
        let step = trainer.step;
        let last = step == opts.steps;
        if every(opts.log_every, step) || last {
            if let Some(m) = trainer.take_metrics()? {
                let rate = images as f64 / since.elapsed().as_secs_f64().max(1e-9);
                let line = format!(
                    "{},{:.6},{:.6},{:.3},{:.4},{},{:.1}",
                    m.step, m.loss, m.recon_mse, m.perplexity, m.codes_used, m.restarts, rate
                );
                append_csv(&metrics_path, METRICS_HEADER, &line)?;
                report(&m, rate);
                since = Instant::now();
                images = 0;
            }
        }
        if every(opts.sample_every, step) || last {
            let (orig, recon) = trainer.last_images(8)?;
            let name = if last {
                "reconstructions.png".to_string()
            } else {
                format!("samples/step_{step:07}.png")
            };
            save_comparison(&opts.out.join(name), &orig, &recon, trainer.image_shape, 8)?;
        }
        if every(opts.save_every, step) || last {
            trainer.checkpoint()?.save(&checkpoint_path)?;
        }
    }
    plot_metrics(&metrics_path, &opts.out.join("curves.png"))
}

/// Draws loss, reconstruction MSE and perplexity from a metrics CSV into a PNG.
pub fn plot_metrics(csv: &Path, png: &Path) -> Result<()> {
    let rows: Vec<Vec<f64>> = read_csv(csv)?
        .into_iter()
        .filter(|r| r.len() >= 4)
        .collect();
    let column = |i: usize| rows.iter().map(|r| (r[0], r[i])).collect::<Vec<_>>();
    let (loss, recon, perplexity) = (column(1), column(2), column(3));
    crate::plot::save_curves(
        png,
        &[
            crate::plot::Series {
                title: "loss (recon / variance + vq) vs step",
                points: &loss,
            },
            crate::plot::Series {
                title: "reconstruction MSE vs step",
                points: &recon,
            },
            crate::plot::Series {
                title: "code perplexity vs step",
                points: &perplexity,
            },
        ],
    )
}
