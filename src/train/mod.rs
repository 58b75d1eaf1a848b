//! Training, for every model the same way: a [`TrainStep`] says what is model-specific (the
//! forward pass and its loss, the metrics, what a checkpoint holds); a [`Trainer`] pairs it with a
//! [`RunState`] (optimizer, step, seed, metric sums) and records whole steps with no readback; one
//! loop, [`run`], draws batches on a background thread and writes metrics, grids and checkpoints.
//! `vqvae`, `vqvae2`, `autoencoder`, `prior` and `classifier` implement the step for the VQ-VAE,
//! VQ-VAE-2, the AE / denoising AE / VAE, the PixelCNN prior and the image classifier.

mod autoencoder;
mod classifier;
pub mod interrupt;
mod pixels;
mod prior;
mod run_dir;
mod state;
mod vqvae;
mod vqvae2;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use autoencoder::{AeMetrics, AeTask, AeTrainer};
pub use classifier::{ClassifierMetrics, ClassifierTask, ClassifierTrainer};
pub use pixels::PixelInput;
pub use prior::{bits, PriorMetrics, PriorTask, PriorTrainer};
pub use run_dir::{holds_run, RunLock, LOCK_FILE};
pub use state::{check_fits, check_learning_rate, MetricSums, RunState, METRIC_SLOTS};
pub use vqvae::{StepMetrics, VqVaeTask, VqVaeTrainer};
pub use vqvae2::{LevelMetrics, Vqvae2Metrics, Vqvae2Task, Vqvae2Trainer};

use arrayvec::ArrayVec;

use crate::data::{Batch, BatchOf, Dataset, Loader, Source};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::io::{csv, grid, plot};
use crate::nn::ParamStore;
use crate::tensor::Tensor;

/// File names inside a run's output directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The metrics of every log, one row each.
pub const METRICS_FILE: &str = "metrics.csv";
/// The training curves drawn from the metrics.
pub const CURVES_FILE: &str = "curves.png";
/// The checkpoint metadata entry naming the data a run trains on.
pub const DATASET_KEY: &str = "dataset";

/// What a step's forward pass gives the loop: the loss to minimise (metric slot 0) and the other
/// metric terms, one per slot from slot 1 (`None` where a model has no such term).
pub struct StepOutput {
    /// The loss, [1].
    pub loss: Tensor,
    /// Slots 1.. of the metrics, kept inline (a step allocates no list for them).
    pub metrics: MetricTerms,
}

/// The metric terms of a step after its loss: at most `METRIC_SLOTS - 1` of them.
pub type MetricTerms = ArrayVec<Option<Tensor>, { METRIC_SLOTS - 1 }>;

/// Originals and their reconstructions, for a PNG grid.
pub struct Snapshot {
    /// The first images of the last batch.
    pub originals: Vec<f32>,
    /// Their reconstructions.
    pub reconstructions: Vec<f32>,
    /// [C, H, W] of one image.
    pub shape: [usize; 3],
}

/// The model-specific part of training.
pub trait TrainStep: Sized {
    /// What batches are drawn from.
    type Data: Source + ?Sized + 'static;
    /// What one metrics read-back gives.
    type Metrics;
    /// The header of `metrics.csv`.
    const METRICS_HEADER: &'static str;
    /// The panels of `curves.png`: (metrics column, title).
    const CURVES: &'static [(usize, &'static str)];

    /// Every learnable parameter.
    fn params(&self) -> &ParamStore;
    /// Checks that `data` fits the model.
    fn check_data(&self, data: &Self::Data) -> Result<()>;
    /// Uploads `batch` and records the forward pass and loss of a training step.
    fn forward(&mut self, batch: &BatchOf<Self::Data>, run: &RunState) -> Result<StepOutput>;
    /// The metrics from their sums since the last read (`step` is the step reached).
    fn metrics(&mut self, sums: &MetricSums, step: u64) -> Result<Self::Metrics>;
    /// One `metrics.csv` row, ending with the items/s `rate`.
    fn csv_line(m: &Self::Metrics, rate: f64) -> String;
    /// The last batch's first `count` images and their reconstructions, for image models.
    fn snapshot(&self, count: usize) -> Result<Option<Snapshot>>;
    /// Adds the model (and what else the step needs to resume, such as the data variance) to a
    /// checkpoint.
    fn write_state(&self, ck: &mut Checkpoint) -> Result<()>;
    /// Rebuilds the step from a checkpoint written with [`TrainStep::write_state`]; `run` holds
    /// the batch size.
    fn from_state(gpu: &Gpu, ck: &Checkpoint, run: &RunState) -> Result<Self>;
}

/// A model in training: its step and its run state.
pub struct Trainer<S: TrainStep> {
    /// The model and its step's buffers.
    pub task: S,
    /// Optimizer, step, seed, batch and metric sums.
    pub run: RunState,
}

impl<S: TrainStep> Trainer<S> {
    /// Records one training step on `batch`: forward, backward, Adam, metric sums. Nothing is
    /// read back.
    pub fn train_step(&mut self, batch: &BatchOf<S::Data>) -> Result<()> {
        // zeroed after the forward pass, which uploads the batch: an upload submits the work
        // recorded before it, and the forward pass does not touch gradients
        let out = self.task.forward(batch, &self.run)?;
        self.task.params().zero_grad();
        out.loss.backward();
        self.run.adam.step(self.task.params());
        self.run.accumulate(&out.loss, &out.metrics);
        self.run.step += 1;
        Ok(())
    }

    /// Records the training step of the current step's batch of `data` (the batch the loop would
    /// draw, prepared on this thread).
    pub fn train_step_on(&mut self, data: &S::Data) -> Result<()> {
        let batch = Batch::of_step(data, self.run.batch, self.run.seed, self.run.step);
        self.train_step(&batch)
    }

    /// Reads back and resets the metrics (a sync point); `None` if no step ran since the last read.
    pub fn take_metrics(&mut self) -> Result<Option<S::Metrics>> {
        match self.run.take_sums()? {
            Some(sums) => self.task.metrics(&sums, self.run.step).map(Some),
            None => Ok(None),
        }
    }

    /// The complete training state: the model, the optimizer, step, seed and batch.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let mut ck = Checkpoint::default();
        self.task.write_state(&mut ck)?;
        self.run.write(self.task.params(), &mut ck)?;
        Ok(ck)
    }

    /// Rebuilds the trainer exactly as it was when `ck` was taken.
    pub fn from_checkpoint(gpu: &Gpu, ck: &Checkpoint) -> Result<Self> {
        let mut run = RunState::from_checkpoint(gpu, ck)?;
        let task = S::from_state(gpu, ck, &run)?;
        run.restore(task.params(), ck)?;
        Ok(Self { task, run })
    }
}

/// How long to train and what to write where.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The data the run trains on, in words ([`crate::data::DataSpec::describe`]): recorded in
    /// the checkpoint, so that a resumed run can be checked against it.
    pub dataset: String,
    /// Train until this many steps in total.
    pub steps: u64,
    /// Output directory.
    pub out: PathBuf,
    /// Read back metrics every this many steps.
    pub log_every: u64,
    /// Image models: write a PNG grid of originals above reconstructions every this many steps.
    pub sample_every: u64,
    /// Write a checkpoint every this many steps.
    pub save_every: u64,
    /// The directory the run was resumed from (its own, where `out` is the same).
    pub resumed_from: Option<PathBuf>,
    /// Replace another run in `out` (a fresh run is refused there otherwise).
    pub overwrite: bool,
}

/// Whether a periodic action with period `n` (0: never) falls on `step`.
fn every(n: u64, step: u64) -> bool {
    n > 0 && step.is_multiple_of(n)
}

/// What [`run`] reports after each step: the step and, at a log, the metrics read back and the
/// items per second since the previous log.
pub type Report<'a, M> = dyn FnMut(u64, Option<(&M, f64)>) + 'a;

/// Trains until `opts.steps` on batches of `data`, writing to `opts.out`: a `metrics.csv` row at
/// every log, a grid of reconstructions every `sample_every` steps and at the end (image models),
/// a checkpoint every `save_every` steps and at the end, and `curves.png`. Each step is submitted
/// as it is recorded, with at most one step in flight on the GPU, so `report` receives every step
/// once its predecessor has run, with the metrics and the items per second since the last
/// read-back at every log.
pub fn run<S: TrainStep>(
    trainer: &mut Trainer<S>,
    data: Arc<S::Data>,
    opts: &TrainOptions,
    report: &mut Report<'_, S::Metrics>,
) -> Result<()> {
    trainer.task.check_data(&data)?;
    let _lock = RunLock::acquire(&opts.out)?;
    let (start, batch) = (trainer.run.step, trainer.run.batch);
    run_dir::claim(&opts.out, start, opts.resumed_from.as_ref(), opts.overwrite)?;
    let metrics_path = opts.out.join(METRICS_FILE);
    let mut loader = Loader::new(data, batch, trainer.run.seed, start, opts.steps);
    let mut since = Instant::now();
    let mut items = 0usize;
    let listening = interrupt::Listening::start();
    for step in start + 1..=opts.steps {
        let next = loader
            .next_batch()
            .ok_or_else(|| Error::Dataset("the batch loader stopped early".into()))?;
        trainer.train_step(&next)?;
        items += batch;
        // asked to stop: this step ends the run as the last one would, then the run is left
        let stopped = listening.stop_requested() && step < opts.steps;
        let last = step == opts.steps || stopped;
        if every(opts.log_every, step) || last {
            if let Some(m) = trainer.take_metrics()? {
                let rate = items as f64 / since.elapsed().as_secs_f64().max(1e-9);
                csv::append(&metrics_path, S::METRICS_HEADER, &S::csv_line(&m, rate))?;
                report(step, Some((&m, rate)));
                since = Instant::now();
                items = 0;
            }
        } else {
            trainer.task.params().gpu().end_step();
            report(step, None);
        }
        if every(opts.sample_every, step) || last {
            if let Some(s) = trainer.task.snapshot(8)? {
                let name = if last {
                    "reconstructions.png".to_string()
                } else {
                    format!("samples/step_{step:07}.png")
                };
                let path = opts.out.join(name);
                grid::save_comparison(&path, &s.originals, &s.reconstructions, s.shape, 8)?;
            }
        }
        if every(opts.save_every, step) || last {
            trainer.run.check_loss()?;
            let mut ck = trainer.checkpoint()?;
            ck.set(DATASET_KEY, &opts.dataset);
            if let Some((tensor, value)) = ck.first_non_finite() {
                return Err(Error::DivergedModel {
                    step,
                    tensor: tensor.to_string(),
                    value,
                });
            }
            ck.save(&opts.out.join(CHECKPOINT_FILE))?;
        }
        if stopped {
            plot_curves::<S>(&opts.out)?;
            return Err(Error::Interrupted {
                step,
                dir: opts.out.display().to_string(),
            });
        }
    }
    plot_curves::<S>(&opts.out)
}

/// Draws `curves.png` of the run in `dir` from its `metrics.csv`.
fn plot_curves<S: TrainStep>(dir: &Path) -> Result<()> {
    plot::plot_columns(&dir.join(METRICS_FILE), &dir.join(CURVES_FILE), S::CURVES)
}

/// Draws the curves of any run's metrics CSV into `png`, with the panels of the model whose
/// header it has. Refuses to write over the CSV or the run's checkpoint beside it.
pub fn plot_metrics(csv: &Path, png: &Path) -> Result<()> {
    crate::io::atomic::refuse_own_input(png, &[csv, &csv.with_file_name(CHECKPOINT_FILE)])?;
    crate::io::grid::check_png_path(png)?;
    let text = std::fs::read_to_string(csv).map_err(|e| Error::io(csv, e))?;
    let header = text.lines().next().unwrap_or_default();
    let curves = [
        (VqVaeTask::METRICS_HEADER, VqVaeTask::CURVES),
        (Vqvae2Task::METRICS_HEADER, Vqvae2Task::CURVES),
        (AeTask::METRICS_HEADER, AeTask::CURVES),
        (PriorTask::METRICS_HEADER, PriorTask::CURVES),
        (ClassifierTask::METRICS_HEADER, ClassifierTask::CURVES),
    ]
    .into_iter()
    .find(|(h, _)| *h == header)
    .map(|(_, curves)| curves)
    .ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{} is not the metrics.csv of a vqgpu training run (its header is {header:?})",
            csv.display()
        ))
    })?;
    plot::plot_columns(csv, png, curves)
}

/// What the step of a quantized image model (VQ-VAE, VQ-VAE-2) keeps besides the model: its input
/// buffer, the image shape and data variance it was built for, and the last reconstruction (for
/// the PNG grids).
pub struct ImageInput {
    /// [C, H, W] of the images.
    pub image_shape: [usize; 3],
    /// Variance of training pixels in [0, 1]; the reconstruction loss is MSE / variance.
    pub variance: f32,
    input: PixelInput,
    last_recon: Option<Tensor>,
}

impl ImageInput {
    /// An input buffer of `batch` images of `image_shape` for a model whose trunk has `hidden`
    /// channels. Its largest activation (the first layer's h/2 channels at H/2 x W/2) must fit
    /// the adapter's binding limit: checked, with overflow-checked sizes, before the first step.
    fn new(
        gpu: &Gpu,
        batch: usize,
        image_shape: [usize; 3],
        variance: f32,
        hidden: usize,
    ) -> Result<Self> {
        let [c, h, w] = image_shape;
        let largest = [batch, hidden / 2, h / 2, w / 2, 4]
            .into_iter()
            .try_fold(1usize, usize::checked_mul)
            .unwrap_or(usize::MAX);
        check_fits(gpu, largest)?;
        Ok(Self {
            image_shape,
            variance,
            input: PixelInput::new(gpu, &[batch, c, h, w])?,
            last_recon: None,
        })
    }

    /// Uploads `batch` into the input buffer and returns it.
    fn upload(&self, batch: &Batch<u8>) -> Result<&Tensor> {
        self.input.upload(&batch.inputs)
    }

    /// Keeps the reconstruction of the last uploaded batch for [`ImageInput::snapshot`].
    fn keep(&mut self, recon: &Tensor) {
        self.last_recon = Some(recon.detach());
    }

    /// Refuses a dataset of other images than the model was built for.
    fn check_data(&self, data: &dyn Dataset) -> Result<()> {
        check_image_data(data, self.image_shape)
    }

    /// The last batch's first `count` images and their reconstructions.
    fn snapshot(&self, count: usize) -> Result<Option<Snapshot>> {
        first_images(
            self.input.values(),
            self.last_recon.as_ref(),
            count,
            self.image_shape,
        )
        .map(Some)
    }

    /// Records the image shape and the data variance in a checkpoint.
    fn write_state(&self, ck: &mut Checkpoint) {
        ck.set_dims("image_shape", &self.image_shape);
        ck.set("variance", self.variance);
    }

    /// The image shape and data variance recorded by [`ImageInput::write_state`].
    fn recorded(ck: &Checkpoint) -> Result<([usize; 3], f32)> {
        Ok((ck.dims("image_shape")?, ck.meta_parse("variance")?))
    }
}

/// Refuses a dataset whose images are not of the `shape` [C, H, W] a model was built for.
fn check_image_data(data: &dyn Dataset, shape: [usize; 3]) -> Result<()> {
    if data.image_shape() != shape {
        return Err(Error::InvalidArgument(format!(
            "dataset images are {:?} but the checkpoint was trained on {shape:?}",
            data.image_shape()
        )));
    }
    Ok(())
}

/// The first `count` images of a training batch `input` [B, ...] of images of `shape`, and of
/// its reconstruction (the input itself before any step), read back.
fn first_images(
    input: &Tensor,
    recon: Option<&Tensor>,
    count: usize,
    shape: [usize; 3],
) -> Result<Snapshot> {
    let per_image = input.numel() / input.dim(0);
    let count = count.min(input.dim(0));
    let original = input.to_vec()?;
    let recon = match recon {
        Some(r) => r.to_vec()?,
        None => original.clone(),
    };
    Ok(Snapshot {
        originals: original[..count * per_image].to_vec(),
        reconstructions: recon[..count * per_image].to_vec(),
        shape,
    })
}
