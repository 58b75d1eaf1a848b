//! The training loops the CLI runs: one recorded step with no readback, metrics accumulated on
//! the GPU and read back only when logging, complete checkpoints for an exact resume, a metrics
//! CSV and PNG plots. `vqvae` trains the autoencoder, `prior` the PixelCNN over its codes.

mod prior;
mod vqvae;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use prior::{bits, label_grid, plot_prior_metrics, run_prior, PriorMetrics, PriorTrainer};
pub use vqvae::{plot_metrics, run, StepMetrics, VqVaeTrainer};

use crate::error::{Error, Result};
use crate::grid::save_grid;

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
