//! The training loops the CLI runs: one recorded step with no readback, metrics accumulated on
//! the GPU and read back only when logging, complete checkpoints for an exact resume, a metrics
//! CSV and PNG plots. `vqvae` trains the VQ-VAE, `prior` the PixelCNN over its codes,
//! `autoencoder` the AE / denoising AE / VAE.

mod autoencoder;
mod prior;
mod vqvae;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use autoencoder::{AeMetrics, AeTrainer};
pub use prior::{bits, label_grid, plot_prior_metrics, run_prior, PriorMetrics, PriorTrainer};
pub use vqvae::{plot_metrics, StepMetrics, VqVaeTrainer};

use crate::checkpoint::Checkpoint;
use crate::data::{Dataset, Loader};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::grid::save_grid;
use crate::nn::{Adam, ParamStore};
use crate::tensor::Tensor;

/// How long and how to train, and where the outputs go.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Train until this many steps in total.
    pub steps: u64,
    /// Items (images or code grids) per step.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f32,
    /// Seed of the initialisation and the data order.
    pub seed: u64,
    /// Output directory.
    pub out: PathBuf,
    /// Read back metrics every this many steps.
    pub log_every: u64,
    /// VQ-VAE: write a PNG grid of originals above reconstructions every this many steps.
    pub sample_every: u64,
    /// Write a checkpoint every this many steps.
    pub save_every: u64,
}

/// File names inside the output directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
const METRICS_FILE: &str = "metrics.csv";

/// Whether a periodic action with period `n` (0: never) falls on `step`.
fn every(n: u64, step: u64) -> bool {
    n > 0 && step.is_multiple_of(n)
}

/// Appends `line` to the CSV at `path`, writing `header` first when the file is new.
fn append_csv(path: &Path, header: &str, line: &str) -> Result<()> {
    let fresh = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    if fresh {
        writeln!(f, "{header}").map_err(|e| Error::io(path, e))?;
    }
    writeln!(f, "{line}").map_err(|e| Error::io(path, e))
}

/// The numeric rows of a metrics CSV (unparsable or empty cells become NaN).
fn read_csv(csv: &Path) -> Result<Vec<Vec<f64>>> {
    let text = std::fs::read_to_string(csv).map_err(|e| Error::io(csv, e))?;
    Ok(text
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|v| v.parse().unwrap_or(f64::NAN))
                .collect()
        })
        .collect())
}

/// Adds Adam's state (learning rate included) and the run's step, seed and batch to a training
/// checkpoint that already holds the model.
fn save_run(
    ck: &mut Checkpoint,
    adam: &Adam,
    params: &ParamStore,
    step: u64,
    seed: u64,
    batch: usize,
) -> Result<()> {
    adam.write_state(params, ck)?;
    ck.set("step", step);
    ck.set("seed", seed);
    ck.set("batch", batch);
    Ok(())
}

/// (seed, learning rate, batch) of a run saved by [`save_run`]: what its trainer is rebuilt with.
fn run_settings(ck: &Checkpoint) -> Result<(u64, f32, usize)> {
    Ok((
        ck.meta_parse("seed")?,
        ck.meta_parse("lr")?,
        ck.meta_parse("batch")?,
    ))
}

/// Adam's state (its moments loaded into `params`) and the step of a run saved by [`save_run`].
fn restore_run(ck: &Checkpoint, params: &ParamStore) -> Result<(Adam, u64)> {
    Ok((Adam::read_state(params, ck)?, ck.meta_parse("step")?))
}

/// Refuses a zero batch, a learning rate that is not a positive number, and a model whose largest
/// activation (`largest_bytes`) exceeds the adapter's storage-binding limit, before any step.
fn check_setup(gpu: &Gpu, batch: usize, lr: f32, largest_bytes: usize) -> Result<()> {
    if batch == 0 {
        return Err(Error::InvalidArgument("--batch must be at least 1".into()));
    }
    if !(lr > 0.0 && lr.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "--lr must be a positive number, got {lr}"
        )));
    }
    if largest_bytes as u64 > gpu.max_binding_bytes() {
        return Err(Error::BufferTooLarge {
            requested: largest_bytes as u64,
            limit: gpu.max_binding_bytes(),
            which: "max_storage_buffer_binding_size",
        });
    }
    Ok(())
}

/// The first `count` images of a training batch `input` [B, ...] and of its reconstruction (the
/// input itself before any step), read back.
fn first_images(
    input: &Tensor,
    recon: Option<&Tensor>,
    count: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let per_image = input.numel() / input.dim(0);
    let count = count.min(input.dim(0));
    let original = input.to_vec()?;
    let recon = match recon {
        Some(r) => r.to_vec()?,
        None => original.clone(),
    };
    Ok((
        original[..count * per_image].to_vec(),
        recon[..count * per_image].to_vec(),
    ))
}

/// Draws the given columns of a metrics CSV against its step column (column 0), one panel per
/// (column, title); empty cells are skipped and panels without points are left out.
fn plot_columns(csv: &Path, png: &Path, columns: &[(usize, &str)]) -> Result<()> {
    let rows = read_csv(csv)?;
    let points: Vec<Vec<(f64, f64)>> = columns
        .iter()
        .map(|&(i, _)| {
            rows.iter()
                .filter(|r| r.len() > i && r[i].is_finite())
                .map(|r| (r[0], r[i]))
                .collect()
        })
        .collect();
    let series: Vec<crate::plot::Series> = columns
        .iter()
        .zip(&points)
        .filter(|(_, p)| !p.is_empty())
        .map(|(&(_, title), p)| crate::plot::Series { title, points: p })
        .collect();
    crate::plot::save_curves(png, &series)
}

/// Originals (top rows) above their reconstructions (bottom rows).
pub fn save_comparison(
    path: &Path,
    originals: &[f32],
    recons: &[f32],
    shape: [usize; 3],
    columns: usize,
) -> Result<()> {
    let mut both = originals.to_vec();
    both.extend_from_slice(recons);
    save_grid(path, &both, shape, columns)
}

/// A model trained on image batches by [`run`]: the VQ-VAE and the AE / VAE / denoising AE.
pub trait ImageTrainer {
    /// What one metrics read-back gives.
    type Metrics;
    /// The header of `metrics.csv`.
    const METRICS_HEADER: &'static str;
    /// (steps taken, images per step, seed, image [C, H, W]).
    fn progress(&self) -> (u64, usize, u64, [usize; 3]);
    /// Records one training step on a batch of images; nothing is read back.
    fn train_step(&mut self, images: &[f32]) -> Result<()>;
    /// Reads back and resets the metrics since the last read (`None` if no step ran).
    fn take_metrics(&mut self) -> Result<Option<Self::Metrics>>;
    /// One `metrics.csv` row, ending with the images/s `rate`.
    fn csv_line(m: &Self::Metrics, rate: f64) -> String;
    /// The last batch's first `count` images and their reconstructions.
    fn last_images(&self, count: usize) -> Result<(Vec<f32>, Vec<f32>)>;
    /// The complete training state.
    fn checkpoint(&self) -> Result<Checkpoint>;
    /// Draws the curves of a metrics CSV into a PNG.
    fn plot(csv: &Path, png: &Path) -> Result<()>;
}

/// Trains `trainer` on `data` until `opts.steps`, writing metrics, grids and checkpoints to `opts.out`.
/// `report` receives every metrics read-back (the CLI draws its progress bar from it).
pub fn run<T: ImageTrainer>(
    trainer: &mut T,
    data: Arc<dyn Dataset>,
    opts: &TrainOptions,
    report: &mut dyn FnMut(&T::Metrics, f64),
) -> Result<()> {
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let metrics_path = opts.out.join(METRICS_FILE);
    let checkpoint_path = opts.out.join(CHECKPOINT_FILE);
    let (start, batch, seed, shape) = trainer.progress();
    let mut loader = Loader::new(data, batch, seed, start, opts.steps);
    let mut since = Instant::now();
    let mut images = 0usize;
    for step in start + 1..=opts.steps {
        let next = loader
            .next_batch()
            .ok_or_else(|| Error::Dataset("the batch loader stopped early".into()))?;
        trainer.train_step(&next.images)?;
        images += batch;
        let last = step == opts.steps;
        if every(opts.log_every, step) || last {
            if let Some(m) = trainer.take_metrics()? {
                let rate = images as f64 / since.elapsed().as_secs_f64().max(1e-9);
                append_csv(&metrics_path, T::METRICS_HEADER, &T::csv_line(&m, rate))?;
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
            save_comparison(&opts.out.join(name), &orig, &recon, shape, 8)?;
        }
        if every(opts.save_every, step) || last {
            trainer.checkpoint()?.save(&checkpoint_path)?;
        }
    }
    T::plot(&metrics_path, &opts.out.join("curves.png"))
}
