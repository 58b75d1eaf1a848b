//! `pipeline`: the whole two-stage model in one command: train a VQ-VAE, encode the dataset into
//! code grids, train a PixelCNN prior on them (conditional when the dataset has labels), sample;
//! or the same with a VQ-VAE-2 and a prior per level, the bottom one given the top codes.
//! The defaults finish on `shapes` in minutes on a CPU driver; [`Preset::Gpu`] trains the
//! reference-size models for a real GPU.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::{CodeGrids, CodeLevel, DataSpec, Split};
use crate::error::{Error, Result, Setting};
use crate::gpu::Gpu;
use crate::models::pixelcnn::PixelCnnConfig;
use crate::models::vqvae::VqVaeConfig;
use crate::nn::LrSchedule;
use crate::ops::softmax;
use crate::train::{check_learning_rate, holds_run, CHECKPOINT_FILE};

use super::encode::{self, EncodeOptions, EncodeReport};
use super::eval::{self, PriorEvalOptions};
use super::progress::in_stage;
use super::sample::{self, SampleOptions, Sampler};
use super::train::{self, PriorOptions, RunOptions, VqVaeOptions};

mod preset;
mod resume;
pub use preset::Preset;
use resume::Stage;

/// The code file inside the pipeline's directory.
const CODES_FILE: &str = "codes.safetensors";
/// The run directory of a VQ-VAE-2's bottom prior.
const BOTTOM_PRIOR_DIR: &str = "bottom_prior";

/// Every setting of the pipeline.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// The images.
    pub data: DataSpec,
    /// Output directory: vqvae/, codes.safetensors, prior/, samples.png.
    pub out: PathBuf,
    /// Seed of both models, the data order and the samples.
    pub seed: u64,
    /// The VQ-VAE (its input channels are the dataset's).
    pub vqvae: VqVaeConfig,
    /// VQ-VAE training steps.
    pub vqvae_steps: u64,
    /// Images per VQ-VAE step.
    pub vqvae_batch: usize,
    /// Images of each split encoded for the prior.
    pub encode_limit: usize,
    /// The prior (its codes and classes are the code file's; its attention is used over a
    /// VQ-VAE-2's top codes only).
    pub prior: PixelCnnConfig,
    /// Prior training steps.
    pub prior_steps: u64,
    /// Code grids per prior step.
    pub prior_batch: usize,
    /// Test grids whose NLL is measured at every prior log.
    pub eval_grids: usize,
    /// Learning rate of the VQ-VAE (or VQ-VAE-2).
    pub lr: f32,
    /// How the VQ-VAE's rate moves over its steps.
    pub lr_schedule: LrSchedule,
    /// Learning rate of the priors.
    pub prior_lr: f32,
    /// How a prior's rate moves over its steps.
    pub prior_lr_schedule: LrSchedule,
    /// Images to sample.
    pub count: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Replace the runs of an earlier pipeline in `out` (refused otherwise).
    pub overwrite: bool,
    /// Continue the pipeline in `out` (see [`resume`]): keep its finished stages, continue an
    /// interrupted run, run the stages after one that did work again.
    pub resume: bool,
    /// The one-level VQ-VAE, or VQ-VAE-2 with a prior per level.
    pub model: PipelineModel,
}

/// Which system the pipeline trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PipelineModel {
    /// A VQ-VAE and a prior over its codes (four stages).
    #[default]
    Vqvae,
    /// A VQ-VAE-2, a prior over its top codes and one over its bottom codes given the top ones
    /// (five stages), each prior with the pipeline's prior sizes.
    Vqvae2,
}

/// What the pipeline left behind.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineReport {
    /// The VQ-VAE checkpoint.
    pub vqvae: PathBuf,
    /// The code file.
    pub codes: PathBuf,
    /// The prior checkpoint (of a VQ-VAE-2's top codes).
    pub prior: PathBuf,
    /// The prior's NLL over the encoded test grids, nats per code.
    pub test_nll: f64,
    /// A VQ-VAE-2's bottom prior checkpoint and its test NLL, nats per code.
    pub bottom_prior: Option<(PathBuf, f64)>,
    /// The sample grid.
    pub samples: PathBuf,
}

impl PipelineOptions {
    /// Checks the settings every stage takes from the command line, so that a mistake in a late
    /// stage's settings is refused before the first stage trains, not after. (What depends on
    /// the data, such as the classes of a conditional prior, is checked by its stage.)
    pub fn validate(&self) -> Result<()> {
        for steps in [self.vqvae_steps, self.prior_steps] {
            Setting::Steps.require_positive(steps)?;
        }
        for batch in [self.vqvae_batch, self.prior_batch] {
            Setting::Batch.require_positive(batch as u64)?;
        }
        check_learning_rate(self.lr)?;
        check_learning_rate(self.prior_lr)?;
        self.vqvae.validate()?;
        encode::check_limit(self.encode_limit)?;
        // the priors as the third (and fourth) stage will make them, over the VQ-VAE's codes
        let codes = self.vqvae.codebook_size;
        if codes > softmax::MAX_CLASSES {
            return Err(Error::setting(
                Setting::CodebookSize,
                format!(
                    "must be at most {} for a prior over the codes, got {codes}",
                    softmax::MAX_CLASSES
                ),
            ));
        }
        let over_codes = PixelCnnConfig {
            codes,
            ..self.prior.clone()
        };
        match self.model {
            PipelineModel::Vqvae => prior_config(&over_codes, CodeLevel::Bottom).validate()?,
            PipelineModel::Vqvae2 => {
                prior_config(&over_codes, CodeLevel::Top).validate()?;
                PixelCnnConfig {
                    condition_codes: codes,
                    ..prior_config(&over_codes, CodeLevel::Bottom)
                }
                .validate()?;
            }
        }
        if self.resume && self.overwrite {
            return Err(Error::InvalidArgument(
                "--resume continues the pipeline in --out and --overwrite replaces it: choose one"
                    .into(),
            ));
        }
        sample::check_count(self.count)?;
        sample::check_temperature(self.temperature)
    }
}

/// Runs the stages (four, or five for a VQ-VAE-2) into `options.out`, after
/// [`PipelineOptions::validate`].
pub fn run(gpu: &Gpu, options: &PipelineOptions) -> Result<PipelineReport> {
    options.validate()?;
    crate::io::atomic::refuse_file_as_dir(&options.out)?;
    // the encoding stage needs the test split too (the first stage trains on the other)
    options.data.open(Split::Test)?;
    let start = Instant::now();
    let two_levels = options.model == PipelineModel::Vqvae2;
    let stages = if two_levels { 5 } else { 4 };
    // announces a stage and names it: its progress bar and log lines carry the name
    let stage = |n: usize, what: &str| {
        let label = format!("stage {n} of {stages}: {what}");
        eprintln!(
            "== {label} ({:.0} s elapsed)",
            start.elapsed().as_secs_f64()
        );
        label
    };
    let out = &options.out;
    let schedule = |steps: u64, batch: usize, dir: &str, log_every: u64| RunOptions {
        steps,
        batch,
        lr: options.lr,
        lr_schedule: options.lr_schedule,
        seed: options.seed,
        out: Some(out.join(dir)),
        resume: None,
        log_every,
        sample_every: steps,
        save_every: 500,
        overwrite: options.overwrite,
    };
    // what the first and third stages train for the chosen system: (stage name, directory)
    // of the autoencoder and its trainer; (stage name, directory, code level) of the prior
    type TrainModel = fn(&Gpu, &VqVaeOptions) -> Result<train::TrainReport>;
    let ((name, dir, train_model), (prior_name, prior_dir, prior_level)): ((_, _, TrainModel), _) =
        match options.model {
            PipelineModel::Vqvae => (
                ("train the VQ-VAE", "vqvae", train::vqvae),
                ("train the PixelCNN prior", "prior", CodeLevel::Bottom),
            ),
            PipelineModel::Vqvae2 => (
                ("train the VQ-VAE-2", "vqvae2", train::vqvae2),
                (
                    "train the prior of the top codes",
                    "top_prior",
                    CodeLevel::Top,
                ),
            ),
        };
    let run_dirs = [dir, prior_dir, BOTTOM_PRIOR_DIR];
    if options.resume {
        if !out.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "{} holds no pipeline to resume: run it without --resume",
                out.display()
            )));
        }
    } else if !options.overwrite {
        // every stage but the encoding and the sampling trains a run
        refuse_earlier_pipeline(out, &run_dirs[..stages - 2])?;
    }
    // a training stage's plan, and its run as the plan says (a new pipeline trains every stage)
    let plan = |dir: &str, steps: u64, stale: bool| -> Result<Stage> {
        if options.resume {
            resume::training_stage(&out.join(dir), steps, stale)
        } else {
            Ok(Stage::Train)
        }
    };
    let with_plan = |run: RunOptions, stage: Stage| {
        if options.resume {
            resume::resumed_run(run, stage)
        } else {
            run
        }
    };
    let kept = |label: String, what: String| eprintln!("{label}: kept ({what})");
    let reached = |dir: &str, step: u64| format!("{} reached step {step}", out.join(dir).display());
    let vqvae_stage = plan(dir, options.vqvae_steps, false)?;
    let vqvae = match vqvae_stage {
        Stage::Kept(step) => {
            kept(stage(1, name), reached(dir, step));
            out.join(dir).join(CHECKPOINT_FILE)
        }
        _ => {
            let run = schedule(options.vqvae_steps, options.vqvae_batch, dir, 50);
            let vqvae_options = VqVaeOptions {
                data: options.data.clone(),
                run: with_plan(run, vqvae_stage),
                model: options.vqvae.clone(),
            };
            in_stage(stage(1, name), || train_model(gpu, &vqvae_options))?.checkpoint
        }
    };
    let codes_path = out.join(CODES_FILE);
    let keep_codes = options.resume && matches!(vqvae_stage, Stage::Kept(_)) && codes_path.exists();
    let codes = if keep_codes {
        let what = format!("{}, the codes of that VQ-VAE", codes_path.display());
        kept(stage(2, "encode the dataset"), what);
        EncodeReport {
            labelled: CodeGrids::load(&codes_path, "train")?.labels.is_some(),
            out: codes_path,
        }
    } else {
        in_stage(stage(2, "encode the dataset"), || {
            encode::run(
                gpu,
                &EncodeOptions {
                    checkpoint: vqvae.clone(),
                    data: options.data.clone(),
                    batch: 128,
                    limit: options.encode_limit,
                    out: codes_path.clone(),
                    overwrite: options.overwrite || options.resume,
                },
            )
        })?
    };
    // the prior over the (top) codes, then a VQ-VAE-2's bottom prior given the top codes; both
    // run again when the codes were encoded again
    let train_prior = |n: usize, what: &str, dir: &str, level, condition_on_top| {
        let prior_stage = plan(dir, options.prior_steps, !keep_codes)?;
        if let Stage::Kept(step) = prior_stage {
            kept(stage(n, what), reached(dir, step));
            let checkpoint = out.join(dir).join(CHECKPOINT_FILE);
            let measured = eval::prior(
                gpu,
                &PriorEvalOptions {
                    checkpoint: checkpoint.clone(),
                    codes: codes.out.clone(),
                    batch: options.prior_batch,
                    limit: usize::MAX,
                },
            )?;
            return Ok((checkpoint, measured.nll));
        }
        let run = RunOptions {
            lr: options.prior_lr,
            lr_schedule: options.prior_lr_schedule,
            ..schedule(options.prior_steps, options.prior_batch, dir, 100)
        };
        let prior_options = PriorOptions {
            codes: codes.out.clone(),
            run: with_plan(run, prior_stage),
            model: prior_config(&options.prior, level),
            conditional: codes.labelled,
            eval_grids: options.eval_grids,
            level,
            condition_on_top,
        };
        let report = in_stage(stage(n, what), || train::prior(gpu, &prior_options))?;
        Ok::<_, Error>((report.run.checkpoint, report.test_nll))
    };
    let (prior, test_nll) = train_prior(3, prior_name, prior_dir, prior_level, false)?;
    let bottom_prior = if two_levels {
        Some(train_prior(
            4,
            "train the prior of the bottom codes given the top codes",
            BOTTOM_PRIOR_DIR,
            CodeLevel::Bottom,
            true,
        )?)
    } else {
        None
    };
    let samples = out.join("samples.png");
    in_stage(stage(stages, "sample"), || {
        sample::run(
            gpu,
            &SampleOptions {
                vqvae: vqvae.clone(),
                prior: prior.clone(),
                bottom_prior: bottom_prior.as_ref().map(|(path, _)| path.clone()),
                count: options.count,
                temperature: options.temperature,
                class: None,
                seed: options.seed,
                sampler: Sampler::Cached,
                out: samples.clone(),
            },
        )
    })?;
    eprintln!(
        "pipeline done in {:.0} s: {}",
        start.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(PipelineReport {
        vqvae,
        codes: codes.out,
        prior,
        test_nll,
        bottom_prior,
        samples,
    })
}

/// Refuses, before the first stage trains, an `out` that holds an earlier pipeline's runs (in
/// `run_dirs`) or code file: a later stage would refuse it only after the first had trained.
fn refuse_earlier_pipeline(out: &Path, run_dirs: &[&str]) -> Result<()> {
    if let Some(dir) = run_dirs.iter().map(|d| out.join(d)).find(|d| holds_run(d)) {
        return Err(Error::InvalidArgument(format!(
            "{} holds an earlier pipeline's runs ({} holds a training run): choose another --out, or pass --overwrite to replace them",
            out.display(),
            dir.display()
        )));
    }
    encode::check_out(&out.join(CODES_FILE), false)
}

/// The pipeline's prior sizes for the codes of `level`: attention (PixelSNAIL-style) only over a
/// VQ-VAE-2's top codes.
fn prior_config(prior: &PixelCnnConfig, level: CodeLevel) -> PixelCnnConfig {
    match level {
        CodeLevel::Top => prior.clone(),
        CodeLevel::Bottom => PixelCnnConfig {
            attention_every: 0,
            ..prior.clone()
        },
    }
}
