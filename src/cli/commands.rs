//! The arguments of each command and their conversion into the library task's options.

use std::path::PathBuf;

use clap::Args;

use vqgpu::models::autoencoder::{AeKind, AutoencoderConfig, Bottleneck, Corruption, Recon};
use vqgpu::models::pixelcnn::TOP_ATTENTION_EVERY;
use vqgpu::tasks::pipeline::PipelineOptions;
use vqgpu::tasks::{encode, eval, latent_map, reconstruct, sample, train};
use vqgpu::{Error, Result};

use super::groups::{
    DataArgs, EvalArgs, ImageRunArgs, LevelArg, LrScheduleArg, ModelArg, PresetArg, PriorModelArgs,
    ReconArg, RunArgs, SamplerArg, TrunkArgs, VqVaeArgs,
};

/// `encode`.
#[derive(Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    eval: EvalArgs,
    /// Output file
    #[arg(long, default_value = "codes.safetensors")]
    out: PathBuf,
    /// Replace the output file if it exists (refused otherwise)
    #[arg(long)]
    overwrite: bool,
}

impl EncodeArgs {
    pub fn options(&self) -> encode::EncodeOptions {
        let eval = self.eval.options();
        encode::EncodeOptions {
            checkpoint: eval.checkpoint,
            data: eval.data,
            batch: eval.batch,
            limit: eval.limit,
            out: self.out.clone(),
            overwrite: self.overwrite,
        }
    }
}

/// `eval prior`.
#[derive(Args)]
pub struct EvalPriorArgs {
    /// Prior checkpoint (checkpoint.safetensors of `train prior`)
    #[arg(long)]
    checkpoint: PathBuf,
    /// The code file (of `encode`) the prior was trained on: its test grids are measured
    #[arg(long)]
    codes: PathBuf,
    /// Code grids per forward pass
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Measure at most this many test grids (default: all)
    #[arg(long)]
    limit: Option<usize>,
}

impl EvalPriorArgs {
    pub fn options(&self) -> eval::PriorEvalOptions {
        eval::PriorEvalOptions {
            checkpoint: self.checkpoint.clone(),
            codes: self.codes.clone(),
            batch: self.batch,
            limit: self.limit.unwrap_or(usize::MAX),
        }
    }
}

/// `reconstruct`.
#[derive(Args)]
pub struct ReconstructArgs {
    /// VQ-VAE checkpoint (checkpoint.safetensors of a training run)
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Images to show (1 to 4096)
    #[arg(long, default_value_t = 32)]
    count: usize,
    /// Output PNG
    #[arg(long, default_value = "reconstructions.png")]
    out: PathBuf,
}

impl ReconstructArgs {
    pub fn options(&self) -> reconstruct::ReconstructOptions {
        reconstruct::ReconstructOptions {
            checkpoint: self.checkpoint.clone(),
            data: self.data.spec(),
            count: self.count,
            out: self.out.clone(),
        }
    }
}

/// `latent-map`.
#[derive(Args)]
pub struct LatentMapArgs {
    /// Checkpoint of a `train vae --latent-dim 2` run
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Grid side of the manifold (z from -2.5 to 2.5 standard deviations on both axes)
    #[arg(long, default_value_t = 16)]
    side: usize,
    /// Test images in the scatter plot
    #[arg(long, default_value_t = 5000)]
    limit: usize,
    /// Output directory (manifold.png, means.png)
    #[arg(long, default_value = "latent-map")]
    out: PathBuf,
}

impl LatentMapArgs {
    pub fn options(&self) -> latent_map::LatentMapOptions {
        latent_map::LatentMapOptions {
            checkpoint: self.checkpoint.clone(),
            data: self.data.spec(),
            side: self.side,
            limit: self.limit,
            out: self.out.clone(),
        }
    }
}

/// `train vqvae`.
#[derive(Args)]
pub struct TrainVqVaeArgs {
    #[command(flatten)]
    images: ImageRunArgs,
    #[command(flatten)]
    model: VqVaeArgs,
}

impl TrainVqVaeArgs {
    pub fn options(&self) -> train::VqVaeOptions {
        train::VqVaeOptions {
            data: self.images.data.spec(),
            run: self.images.run(),
            model: self.model.config(),
        }
    }
}

/// `train ae | dae | vae`.
#[derive(Args)]
pub struct TrainAeArgs {
    #[command(flatten)]
    images: ImageRunArgs,
    #[command(flatten)]
    trunk: TrunkArgs,
    /// Spatial bottleneck: latent channels of the H/4 x W/4 code
    #[arg(long, default_value_t = 8)]
    latent_channels: usize,
    /// Flat bottleneck instead: a vector of this size per image (through Linear layers)
    #[arg(long)]
    latent_dim: Option<usize>,
    /// dae: probability that a pixel is blacked out
    #[arg(long)]
    mask_prob: Option<f32>,
    /// dae: standard deviation of added Gaussian noise, in [0, 1] pixel units
    #[arg(long)]
    noise_std: Option<f32>,
    /// vae: weight of the KL term
    #[arg(long, default_value_t = 1.0)]
    beta: f32,
    /// vae: reconstruction likelihood
    #[arg(long, value_enum, default_value = "mse")]
    recon: ReconArg,
}

impl TrainAeArgs {
    /// The options of `train {name}` (ae, dae or vae).
    pub fn options(&self, name: &str) -> Result<train::AeOptions> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.into()));
        let kind = match (name, self.mask_prob, self.noise_std) {
            ("dae", Some(p), None) => AeKind::Denoising(Corruption::Mask(p)),
            ("dae", None, Some(s)) => AeKind::Denoising(Corruption::Gaussian(s)),
            ("dae", None, None) => AeKind::Denoising(Corruption::Mask(0.25)),
            ("dae", Some(_), Some(_)) => return bad("give --mask-prob or --noise-std, not both"),
            (_, Some(_), _) | (_, _, Some(_)) => {
                return bad("--mask-prob and --noise-std are for `train dae`")
            }
            ("vae", ..) => AeKind::Variational {
                beta: self.beta,
                recon: match self.recon {
                    ReconArg::Mse => Recon::Mse,
                    ReconArg::Bce => Recon::Bce,
                },
            },
            _ => AeKind::Plain,
        };
        let model = AutoencoderConfig {
            image_shape: [0; 3],
            hidden: self.trunk.hidden,
            res_hidden: self.trunk.res_hidden,
            res_layers: self.trunk.res_layers,
            bottleneck: match self.latent_dim {
                Some(dim) => Bottleneck::Flat { dim },
                None => Bottleneck::Spatial {
                    channels: self.latent_channels,
                },
            },
            kind,
        };
        Ok(train::AeOptions {
            data: self.images.data.spec(),
            run: self.images.run(),
            model,
        })
    }
}

/// `train prior`.
#[derive(Args)]
pub struct TrainPriorArgs {
    /// Code file written by `vqgpu encode` (train and test splits)
    #[arg(long)]
    codes: PathBuf,
    #[command(flatten)]
    run: RunArgs,
    /// Test grids used for the NLL at each log (all of them at the end)
    #[arg(long, default_value_t = 1000)]
    eval_grids: usize,
    #[command(flatten)]
    model: PriorModelArgs,
    /// Condition on the class labels stored in the code file (a learned per-class bias)
    #[arg(long)]
    conditional: bool,
    /// Which grids of the code file: bottom (a VQ-VAE's only grids, or a VQ-VAE-2's bottom ones)
    /// or top (a VQ-VAE-2's)
    #[arg(long, value_enum, default_value = "bottom")]
    level: LevelArg,
    /// With a VQ-VAE-2's code file: condition the prior over the bottom grids on the top grids
    /// (their embedding, brought to the bottom grid's size, added in every layer)
    #[arg(long)]
    condition_on_top: bool,
}

impl TrainPriorArgs {
    pub fn options(&self) -> train::PriorOptions {
        train::PriorOptions {
            codes: self.codes.clone(),
            run: self.run.options(0),
            model: self.model.config(match self.level {
                LevelArg::Top => TOP_ATTENTION_EVERY,
                LevelArg::Bottom => 0,
            }),
            conditional: self.conditional,
            eval_grids: self.eval_grids,
            level: self.level.into(),
            condition_on_top: self.condition_on_top,
        }
    }
}

/// `sample`: from a prior and its VQ-VAE, or from a VAE.
#[derive(Args)]
pub struct SampleArgs {
    /// VQ-VAE checkpoint whose codes trained the prior
    #[arg(long, requires = "prior", conflicts_with = "vae")]
    vqvae: Option<PathBuf>,
    /// Prior checkpoint (checkpoint.safetensors of `train prior`; a VQ-VAE-2's top codes' prior)
    #[arg(long, requires = "vqvae")]
    prior: Option<PathBuf>,
    /// A VQ-VAE-2's bottom codes' prior (`train prior --condition-on-top`)
    #[arg(long, requires = "prior")]
    bottom_prior: Option<PathBuf>,
    /// Instead: a VAE checkpoint (`train vae`); decodes z ~ N(0, I)
    #[arg(long, required_unless_present = "vqvae")]
    vae: Option<PathBuf>,
    /// Images to draw (a conditional prior without --class: rounded up to whole rows, one per class)
    #[arg(long, default_value_t = 64)]
    count: usize,
    /// Softmax temperature (0: the most likely code at every step)
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Class of every sample (conditional priors; default: one row per class)
    #[arg(long)]
    class: Option<u32>,
    /// Seed of the sampling RNG
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How a prior's code grids are drawn (both draw the same codes; cached is linear in the grid's positions)
    #[arg(long, value_enum, default_value = "cached")]
    sampler: SamplerArg,
    /// Output PNG
    #[arg(long, default_value = "samples.png")]
    out: PathBuf,
}

impl SampleArgs {
    /// The options of sampling from a prior, if `--vqvae` and `--prior` are given.
    pub fn prior_options(&self) -> Option<sample::SampleOptions> {
        Some(sample::SampleOptions {
            vqvae: self.vqvae.clone()?,
            prior: self.prior.clone()?,
            bottom_prior: self.bottom_prior.clone(),
            count: self.count,
            temperature: self.temperature,
            class: self.class,
            seed: self.seed,
            sampler: self.sampler.into(),
            out: self.out.clone(),
        })
    }

    /// The options of sampling from a VAE, if `--vae` is given.
    pub fn vae_options(&self) -> Option<sample::VaeSampleOptions> {
        Some(sample::VaeSampleOptions {
            vae: self.vae.clone()?,
            count: self.count,
            seed: self.seed,
            out: self.out.clone(),
        })
    }
}

/// The pipeline's flags; the model sizes, batches, steps and learning rate default to those of
/// the preset (see `with_defaults`).
#[derive(Args)]
pub struct PipelineArgs {
    /// Sizes and lengths: cpu (small models, minutes on the software driver) or gpu (the
    /// reference-size models trained longer on the whole dataset, for a real GPU: `--preset gpu
    /// --help` lists its defaults); the flags given override it
    #[arg(long, value_enum, default_value = "cpu")]
    preset: PresetArg,
    /// vqvae (a VQ-VAE and a prior over its codes) or vqvae2 (a VQ-VAE-2, a prior over its top
    /// codes and one over its bottom codes given them; images with sides that are multiples of 8,
    /// e.g. --image-size 64)
    #[arg(long, value_enum, default_value = "vqvae")]
    model: ModelArg,
    #[command(flatten)]
    data: DataArgs,
    /// Output directory: vqvae/, codes.safetensors, prior/, samples.png
    #[arg(long, default_value = "runs/pipeline")]
    out: PathBuf,
    /// Seed of both models, the data order and the samples
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// VQ-VAE training steps
    #[arg(long, default_value_t = 1000)]
    vqvae_steps: u64,
    /// Images per VQ-VAE step
    #[arg(long, default_value_t = 32)]
    vqvae_batch: usize,
    #[command(flatten)]
    vqvae: VqVaeArgs,
    /// Images of each split encoded for the prior
    #[arg(long, default_value_t = 4000)]
    encode_limit: usize,
    /// Prior training steps
    #[arg(long, default_value_t = 2000)]
    prior_steps: u64,
    /// Code grids per prior step
    #[arg(long, default_value_t = 16)]
    prior_batch: usize,
    /// Learning rate of the VQ-VAE
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    /// How the VQ-VAE's learning rate moves over its steps: constant, or cosine (down from --lr
    /// towards 0 at the last step)
    #[arg(long, value_enum, default_value = "constant")]
    lr_schedule: LrScheduleArg,
    /// Learning rate of the priors
    #[arg(long, default_value_t = 2e-3)]
    prior_lr: f32,
    /// How a prior's learning rate moves over its steps: constant or cosine
    #[arg(long, value_enum, default_value = "constant")]
    prior_lr_schedule: LrScheduleArg,
    #[command(flatten)]
    prior: PriorModelArgs,
    /// Images to sample
    #[arg(long, default_value_t = 64)]
    count: usize,
    /// Sampling temperature
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Replace the runs of an earlier pipeline in --out (refused otherwise)
    #[arg(long)]
    overwrite: bool,
    /// Continue the pipeline in --out: its finished stages are kept, an interrupted run
    /// continues from its checkpoint, and the stages after one that did any work run again (the
    /// runs keep their recorded settings; the step counts may grow, but not past the end of a
    /// cosine schedule)
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
}

impl PipelineArgs {
    pub fn options(&self) -> PipelineOptions {
        PipelineOptions {
            data: self.data.spec(),
            out: self.out.clone(),
            seed: self.seed,
            vqvae: self.vqvae.config(),
            vqvae_steps: self.vqvae_steps,
            vqvae_batch: self.vqvae_batch,
            encode_limit: self.encode_limit,
            prior: self.prior.config(TOP_ATTENTION_EVERY),
            prior_steps: self.prior_steps,
            prior_batch: self.prior_batch,
            lr: self.lr,
            lr_schedule: self.lr_schedule.into(),
            prior_lr: self.prior_lr,
            prior_lr_schedule: self.prior_lr_schedule.into(),
            count: self.count,
            temperature: self.temperature,
            overwrite: self.overwrite,
            resume: self.resume,
            model: self.model.into(),
            ..PipelineOptions::preset(self.preset.into())
        }
    }
}
