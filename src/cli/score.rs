//! The arguments of the commands that measure sample quality: `train classifier`,
//! `eval classifier` and `eval samples`.

use std::path::PathBuf;

use clap::Args;

use vqgpu::tasks::{score, train};

use super::groups::{DataArgs, RunArgs};

/// `train classifier`.
#[derive(Args)]
pub struct TrainClassifierArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    run: RunArgs,
    /// Channels of the first conv (the features have 4x as many)
    #[arg(long, default_value_t = 32)]
    channels: usize,
}

impl TrainClassifierArgs {
    pub fn options(&self) -> train::ClassifierOptions {
        train::ClassifierOptions {
            data: self.data.spec(),
            // a classifier has no reconstructions to write
            run: self.run.options(0),
            channels: self.channels,
        }
    }
}

/// `eval classifier`.
#[derive(Args)]
pub struct EvalClassifierArgs {
    /// Classifier checkpoint (`train classifier`)
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Use at most this many test images (default: all)
    #[arg(long)]
    limit: Option<usize>,
}

impl EvalClassifierArgs {
    pub fn options(&self) -> score::ClassifierEvalOptions {
        score::ClassifierEvalOptions {
            checkpoint: self.checkpoint.clone(),
            data: self.data.spec(),
            limit: self.limit.unwrap_or(usize::MAX),
        }
    }
}

/// `eval samples`.
#[derive(Args)]
pub struct EvalSamplesArgs {
    /// Classifier checkpoint whose features are compared (`train classifier` on the same data)
    #[arg(long)]
    classifier: PathBuf,
    /// VQ-VAE (or VQ-VAE-2) checkpoint whose codes trained the prior
    #[arg(long, required_unless_present = "grid", conflicts_with = "grid")]
    vqvae: Option<PathBuf>,
    /// Prior checkpoint (a VQ-VAE-2's top codes' prior)
    #[arg(long, required_unless_present = "grid", conflicts_with = "grid")]
    prior: Option<PathBuf>,
    /// A VQ-VAE-2's bottom codes' prior (`train prior --condition-on-top`)
    #[arg(long, requires = "prior")]
    bottom_prior: Option<PathBuf>,
    /// Score the images of this PNG grid (as `sample` writes it) instead of drawing samples
    #[arg(long)]
    grid: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Samples drawn, and real and reconstructed images compared
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Sampling temperature
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Sampling seed (of the first draw)
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Independent draws of --count samples (seeds --seed, --seed + 1, ...), each scored, with
    /// their mean and range: one draw's score varies from draw to draw
    #[arg(long, default_value_t = 1, conflicts_with = "grid")]
    draws: usize,
}

/// What `eval samples` scores.
pub enum SamplesTask {
    /// Samples drawn from a prior.
    Drawn(score::SampleScoreOptions),
    /// The images of a PNG grid.
    Grid(score::GridScoreOptions),
}

impl EvalSamplesArgs {
    pub fn task(&self) -> SamplesTask {
        match (&self.grid, &self.vqvae, &self.prior) {
            (Some(grid), _, _) => SamplesTask::Grid(score::GridScoreOptions {
                classifier: self.classifier.clone(),
                grid: grid.clone(),
                data: self.data.spec(),
            }),
            // clap requires both without --grid
            (None, vqvae, prior) => SamplesTask::Drawn(score::SampleScoreOptions {
                classifier: self.classifier.clone(),
                vqvae: vqvae.clone().unwrap_or_default(),
                prior: prior.clone().unwrap_or_default(),
                bottom_prior: self.bottom_prior.clone(),
                data: self.data.spec(),
                count: self.count,
                temperature: self.temperature,
                seed: self.seed,
                draws: self.draws,
            }),
        }
    }
}
