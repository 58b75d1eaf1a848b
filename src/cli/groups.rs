//! The argument groups several commands share: data, a training run, model sizes, timing.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use vqgpu::data::{CodeLevel, DataSpec};
use vqgpu::models::pixelcnn::PixelCnnConfig;
use vqgpu::models::vqvae::VqVaeConfig;
use vqgpu::nn::{CodebookUpdate, EmaConfig, LrSchedule};
use vqgpu::tasks::pipeline::{PipelineModel, Preset};
use vqgpu::tasks::{bench, eval, sample, train};

/// Which images to use.
#[derive(Args)]
pub struct DataArgs {
    /// Dataset: shapes (built in), mnist, fashion-mnist, cifar10 or folder
    #[arg(long, default_value = "shapes")]
    dataset: String,
    /// Data directory (fashion-mnist defaults to /usr/share/datasets/fashion-mnist)
    #[arg(long)]
    data: Option<PathBuf>,
    /// Side of the images: folder (a multiple of 4) or shapes (32, 64 or 128) [default: 32]
    #[arg(long)]
    image_size: Option<usize>,
}

impl DataArgs {
    pub(super) fn spec(&self) -> DataSpec {
        DataSpec {
            dataset: self.dataset.clone(),
            dir: self.data.clone(),
            image_size: self.image_size,
        }
    }
}

/// A trained model and the images to use it on.
#[derive(Args)]
pub struct EvalArgs {
    /// Checkpoint (checkpoint.safetensors of a training run)
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Images per forward pass
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Use at most this many images of each split read (default: all)
    #[arg(long)]
    limit: Option<usize>,
}

impl EvalArgs {
    pub fn options(&self) -> eval::EvalOptions {
        eval::EvalOptions {
            checkpoint: self.checkpoint.clone(),
            data: self.data.spec(),
            batch: self.batch,
            limit: self.limit.unwrap_or(usize::MAX),
        }
    }
}

/// The settings of a training run (their defaults differ by model: see `with_defaults`).
#[derive(Args)]
pub struct RunArgs {
    /// Total training steps
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Items (images or code grids) per step
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Adam learning rate
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// How the learning rate moves over the --steps: constant, or cosine (down from --lr towards 0
    /// at the last step, which a resumed run cannot then go past)
    #[arg(long, value_enum, default_value = "constant")]
    lr_schedule: LrScheduleArg,
    /// Seed of the initialisation, the data order and the GPU noise
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (metrics.csv, curves.png, checkpoint.safetensors, PNG grids) [default: the
    /// --resume directory, else runs/<model>]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run saved in this directory (its model and optimizer settings are used)
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Read back and print metrics every N steps (0: only after the last step)
    #[arg(long, default_value_t = 50)]
    log_every: u64,
    /// Write a checkpoint every N steps (0: only after the last step)
    #[arg(long, default_value_t = 500)]
    save_every: u64,
    /// Replace the run already in the output directory (a new run there is refused otherwise)
    #[arg(long)]
    overwrite: bool,
}

impl RunArgs {
    pub(super) fn options(&self, sample_every: u64) -> train::RunOptions {
        train::RunOptions {
            steps: self.steps,
            batch: self.batch,
            lr: self.lr,
            lr_schedule: self.lr_schedule.into(),
            seed: self.seed,
            out: self.out.clone(),
            resume: self.resume.clone(),
            log_every: self.log_every,
            sample_every,
            save_every: self.save_every,
            overwrite: self.overwrite,
        }
    }
}

/// A training run of an image model: its images, its run settings, its reconstruction grids.
#[derive(Args)]
pub struct ImageRunArgs {
    #[command(flatten)]
    pub(super) data: DataArgs,
    #[command(flatten)]
    run: RunArgs,
    /// Write a grid of training images above their reconstructions every N steps (0: only after
    /// the last step)
    #[arg(long = "recon-every", alias = "sample-every", default_value_t = 500)]
    sample_every: u64,
}

impl ImageRunArgs {
    pub(super) fn run(&self) -> train::RunOptions {
        self.run.options(self.sample_every)
    }
}

/// The sizes of the conv encoder / decoder (the reference model: docs/design.md).
#[derive(Args)]
pub struct TrunkArgs {
    /// Trunk channels
    #[arg(long, default_value_t = 128)]
    pub(super) hidden: usize,
    /// Channels inside a residual layer
    #[arg(long, default_value_t = 32)]
    pub(super) res_hidden: usize,
    /// Residual layers per stack
    #[arg(long, default_value_t = 2)]
    pub(super) res_layers: usize,
}

/// How a VQ-VAE's codebook learns.
#[derive(Clone, Copy, ValueEnum)]
enum QuantizerArg {
    /// Exponential moving averages (decay 0.99, eps 1e-5)
    Ema,
    /// The codebook loss
    Loss,
}

/// The VQ-VAE's sizes and quantizer.
#[derive(Args)]
pub struct VqVaeArgs {
    #[command(flatten)]
    trunk: TrunkArgs,
    /// Codebook size K
    #[arg(long, default_value_t = 512)]
    codebook_size: usize,
    /// Code dimension D
    #[arg(long, default_value_t = 64)]
    code_dim: usize,
    /// Commitment weight
    #[arg(long, default_value_t = 0.25)]
    beta: f32,
    /// Codebook update
    #[arg(long, value_enum, default_value = "ema")]
    quantizer: QuantizerArg,
    /// With EMA: restart codes unused for this many steps (0: never)
    #[arg(long, default_value_t = 20)]
    restart_dead_codes: u32,
}

impl VqVaeArgs {
    pub(super) fn config(&self) -> VqVaeConfig {
        VqVaeConfig {
            hidden: self.trunk.hidden,
            res_hidden: self.trunk.res_hidden,
            res_layers: self.trunk.res_layers,
            codebook_size: self.codebook_size,
            code_dim: self.code_dim,
            beta: self.beta,
            update: match self.quantizer {
                QuantizerArg::Ema => CodebookUpdate::Ema {
                    config: EmaConfig::default(),
                    restart_after: Some(self.restart_dead_codes).filter(|&n| n > 0),
                },
                QuantizerArg::Loss => CodebookUpdate::Loss,
            },
            ..VqVaeConfig::default()
        }
    }
}

/// The PixelCNN prior's sizes.
#[derive(Args)]
pub struct PriorModelArgs {
    /// Channels of the vertical and horizontal stacks
    #[arg(long, default_value_t = 64)]
    channels: usize,
    /// Gated residual layers
    #[arg(long, default_value_t = 10)]
    layers: usize,
    /// Side of the masked kernels (3, 5 or 7)
    #[arg(long, default_value_t = 3)]
    kernel: usize,
    /// Channels of the output head's hidden 1x1 conv
    #[arg(long, default_value_t = 256)]
    head: usize,
    /// Causal self-attention over the whole grid after every N gated layers, PixelSNAIL-style
    /// (0: none) [default: 2 for a VQ-VAE-2's top codes, else 0]
    #[arg(long, value_name = "N")]
    attention_every: Option<usize>,
    /// Heads of each attention block (they divide the channels)
    #[arg(long, default_value_t = 4)]
    heads: usize,
}

impl PriorModelArgs {
    /// The sizes, with attention after every `default_attention` layers unless the flag says.
    pub(super) fn config(&self, default_attention: usize) -> PixelCnnConfig {
        PixelCnnConfig {
            channels: self.channels,
            layers: self.layers,
            kernel: self.kernel,
            head: self.head,
            attention_every: self.attention_every.unwrap_or(default_attention),
            heads: self.heads,
            ..PixelCnnConfig::default()
        }
    }
}

/// A VAE's reconstruction likelihood.
#[derive(Clone, Copy, ValueEnum)]
pub(super) enum ReconArg {
    /// Gaussian: squared error / (2 variance)
    Mse,
    /// Bernoulli: the decoder gives logits
    Bce,
}

/// How `sample` draws code grids.
#[derive(Clone, Copy, ValueEnum)]
pub(super) enum SamplerArg {
    /// One forward pass of the whole grid per position (the reference; quadratic in the positions)
    Full,
    /// Each layer's activations kept between positions (linear in the positions)
    Cached,
}

impl From<SamplerArg> for sample::Sampler {
    fn from(arg: SamplerArg) -> Self {
        match arg {
            SamplerArg::Full => Self::Full,
            SamplerArg::Cached => Self::Cached,
        }
    }
}

/// `train prior --level`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum LevelArg {
    /// A VQ-VAE's grids, or a VQ-VAE-2's bottom grids
    Bottom,
    /// A VQ-VAE-2's top grids
    Top,
}

impl From<LevelArg> for CodeLevel {
    fn from(arg: LevelArg) -> Self {
        match arg {
            LevelArg::Bottom => Self::Bottom,
            LevelArg::Top => Self::Top,
        }
    }
}

/// `pipeline --model`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum ModelArg {
    /// A VQ-VAE and a prior over its codes
    Vqvae,
    /// A VQ-VAE-2 and a prior per level, the bottom one given the top codes
    Vqvae2,
}

impl From<ModelArg> for PipelineModel {
    fn from(arg: ModelArg) -> Self {
        match arg {
            ModelArg::Vqvae => Self::Vqvae,
            ModelArg::Vqvae2 => Self::Vqvae2,
        }
    }
}

/// `pipeline --preset`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum PresetArg {
    /// Small models that finish on shapes in minutes on 2 CPU cores (the software driver)
    Cpu,
    /// The reference-size models, trained longer on the whole dataset: for a real GPU
    Gpu,
}

impl From<PresetArg> for Preset {
    fn from(arg: PresetArg) -> Self {
        match arg {
            PresetArg::Cpu => Self::Cpu,
            PresetArg::Gpu => Self::Gpu,
        }
    }
}

/// `--lr-schedule`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum LrScheduleArg {
    /// The same rate at every step
    Constant,
    /// Half a cosine from the rate down towards 0 at the last step
    Cosine,
}

impl From<LrScheduleArg> for LrSchedule {
    fn from(arg: LrScheduleArg) -> Self {
        match arg {
            LrScheduleArg::Constant => Self::Constant,
            LrScheduleArg::Cosine => Self::Cosine,
        }
    }
}

/// How long a benchmark row is timed.
#[derive(Args)]
pub struct TimingArgs {
    /// Calls per timed repeat
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Timed repeats (the median is reported)
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

impl TimingArgs {
    pub(super) fn config(&self) -> bench::BenchConfig {
        bench::BenchConfig {
            iters: self.iters,
            repeats: self.repeats,
            ..bench::BenchConfig::default()
        }
    }
}
