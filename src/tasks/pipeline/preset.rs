//! The pipeline's presets: its sizes, lengths and learning rates for the machine it runs on.

use std::path::PathBuf;

use crate::data::DataSpec;
use crate::models::pixelcnn::{PixelCnnConfig, TOP_ATTENTION_EVERY};
use crate::models::vqvae::VqVaeConfig;
use crate::nn::LrSchedule;

use super::{PipelineModel, PipelineOptions};

/// The pipeline's sizes and lengths, chosen for the machine it runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Preset {
    /// Small models that finish on `shapes` in minutes on a CPU driver (2 cores, lavapipe).
    #[default]
    Cpu,
    /// The reference-size models (docs/design.md) trained longer, on the whole dataset: for a
    /// real GPU.
    Gpu,
}

impl PipelineOptions {
    /// The settings of `preset` (the defaults are [`Preset::Cpu`]'s).
    pub fn preset(preset: Preset) -> Self {
        let common = Self {
            data: DataSpec::default(),
            out: PathBuf::from("runs/pipeline"),
            seed: 0,
            vqvae: VqVaeConfig::default(),
            vqvae_steps: 1000,
            vqvae_batch: 32,
            encode_limit: 4000,
            prior: PixelCnnConfig {
                attention_every: TOP_ATTENTION_EVERY,
                ..PixelCnnConfig::default()
            },
            prior_steps: 2000,
            prior_batch: 16,
            eval_grids: 250,
            lr: 2e-3,
            lr_schedule: LrSchedule::Constant,
            prior_lr: 2e-3,
            prior_lr_schedule: LrSchedule::Constant,
            count: 64,
            temperature: 1.0,
            overwrite: false,
            resume: false,
            model: PipelineModel::Vqvae,
        };
        match preset {
            // the prior's cosine schedule at twice the rate: 0.05 bits per code less test NLL
            // on `shapes` than either rate held constant (docs/results.md)
            Preset::Cpu => Self {
                prior_lr: 4e-3,
                prior_lr_schedule: LrSchedule::Cosine,
                vqvae: VqVaeConfig {
                    hidden: 32,
                    res_hidden: 16,
                    res_layers: 1,
                    codebook_size: 64,
                    code_dim: 16,
                    ..VqVaeConfig::default()
                },
                prior: PixelCnnConfig {
                    channels: 32,
                    layers: 7,
                    kernel: 3,
                    head: 64,
                    ..common.prior.clone()
                },
                ..common
            },
            Preset::Gpu => Self {
                vqvae_steps: 5000,
                vqvae_batch: 128,
                encode_limit: 60_000,
                prior_steps: 5000,
                prior_batch: 64,
                eval_grids: 1000,
                lr: 1e-3,
                prior_lr: 1e-3,
                ..common
            },
        }
    }
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self::preset(Preset::Cpu)
    }
}
