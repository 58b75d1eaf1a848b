//! `train vqvae | vqvae2 | ae | dae | vae | prior | classifier`: a fresh run or the continuation
//! of a saved one, with progress on the console, through the one training loop.

use std::fmt::Display;
use std::path::PathBuf;
use std::sync::Arc;

use crate::data::{pixel_variance, CodeGrids, CodeLevel, DataSpec, Dataset, Split};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::models::autoencoder::AutoencoderConfig;
use crate::models::classifier::ClassifierConfig;
use crate::models::pixelcnn::{PixelCnn, PixelCnnConfig};
use crate::models::trained_by;
use crate::models::vqvae::VqVaeConfig;
use crate::nn::LrSchedule;
use crate::train::{
    self, bits, AeTrainer, ClassifierTrainer, PriorTrainer, TrainOptions, TrainStep, Trainer,
    VqVaeTrainer, Vqvae2Trainer,
};

use super::progress::Progress;

/// Training images the data variance is measured on.
const VARIANCE_IMAGES: usize = 10_000;

/// The settings of a training run, whatever the model.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// Train until this many steps in total.
    pub steps: u64,
    /// Items per step (a resumed run keeps its own).
    pub batch: usize,
    /// Adam learning rate (a resumed run keeps its own).
    pub lr: f32,
    /// How the rate moves over the `steps` (a resumed run keeps its own).
    pub lr_schedule: LrSchedule,
    /// Seed of the initialisation, the data order and the GPU noise (a resumed run keeps its own).
    pub seed: u64,
    /// Output directory; `None`: the resumed run's directory, else `runs/<model>`.
    pub out: Option<PathBuf>,
    /// Continue the run saved in this directory.
    pub resume: Option<PathBuf>,
    /// Read back and print metrics every this many steps.
    pub log_every: u64,
    /// Image models: write a grid of originals above reconstructions every this many steps.
    pub sample_every: u64,
    /// Write a checkpoint every this many steps.
    pub save_every: u64,
    /// Replace another run in the output directory (refused otherwise).
    pub overwrite: bool,
}

impl RunOptions {
    /// Where the run writes: `out`, else the run it resumes, else `runs/<name>`.
    pub fn out_dir(&self, name: &str) -> PathBuf {
        self.out
            .clone()
            .or_else(|| self.resume.clone())
            .unwrap_or_else(|| PathBuf::from("runs").join(name))
    }

    fn train_options(&self, name: &str, dataset: &str) -> TrainOptions {
        TrainOptions {
            dataset: dataset.to_string(),
            steps: self.steps,
            out: self.out_dir(name),
            log_every: self.log_every,
            sample_every: self.sample_every,
            save_every: self.save_every,
            resumed_from: self.resume.clone(),
            overwrite: self.overwrite,
        }
    }

    /// The checkpoint of the run to resume, if any, refused if another `train` command than
    /// `command` saved it (naming the one that continues it), or if it records another `dataset`
    /// than this one (checked before any data is read).
    fn resumed_checkpoint(&self, command: &str, dataset: &str) -> Result<Option<Checkpoint>> {
        let Some(dir) = &self.resume else {
            return Ok(None);
        };
        let ck = Checkpoint::load(&dir.join(train::CHECKPOINT_FILE))?;
        if let Some(trained) = trained_by(&ck).filter(|&trained| trained != command) {
            let codes = if trained == "prior" {
                " --codes FILE"
            } else {
                ""
            };
            return Err(Error::InvalidArgument(format!(
                "{dir} holds a `train {trained}` run, not a `train {command}` one: continue it with `vqgpu train {trained}{codes} --resume {dir}`",
                dir = dir.display()
            )));
        }
        match ck.meta(train::DATASET_KEY) {
            Ok(recorded) if recorded != dataset => Err(ck.error(format!(
                "was trained on {recorded}, not {dataset}: resume it on the same data"
            ))),
            _ => Ok(Some(ck)),
        }
    }

    /// The run saved in `resumed` (from [`RunOptions::resumed_checkpoint`]), else `fresh()`;
    /// refuses a step count the run has reached.
    fn start<S: TrainStep>(
        &self,
        gpu: &Gpu,
        resumed: Option<Checkpoint>,
        fresh: impl FnOnce() -> Result<Trainer<S>>,
    ) -> Result<Trainer<S>> {
        let trainer = match (&self.resume, resumed) {
            (Some(dir), Some(ck)) => {
                let t = Trainer::from_checkpoint(gpu, &ck)?;
                eprintln!("resuming {} at step {}", dir.display(), t.run.step);
                t
            }
            _ => {
                let mut t = fresh()?;
                t.run.adam.set_schedule(self.lr_schedule, self.steps);
                t
            }
        };
        trainer.run.check_steps(self.steps)?;
        Ok(trainer)
    }
}

/// What a training run left behind.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainReport {
    /// The output directory.
    pub out: PathBuf,
    /// Its checkpoint.
    pub checkpoint: PathBuf,
    /// The step reached.
    pub step: u64,
}

/// Trains `trainer` on `data` with a progress bar moved every step and a line per log (`unit`:
/// what the items are).
fn fit<S: TrainStep>(
    trainer: &mut Trainer<S>,
    data: Arc<S::Data>,
    opts: &TrainOptions,
    unit: &str,
) -> Result<TrainReport>
where
    S::Metrics: Display,
{
    let progress = Progress::new(trainer.run.step, opts.steps);
    train::run(trainer, data, opts, &mut |step, logged| match logged {
        Some((m, rate)) => progress.show(step, format!("{m} | {rate:.0} {unit}/s")),
        None => progress.advance(step),
    })?;
    drop(progress);
    eprintln!("done: {}", opts.out.display());
    Ok(TrainReport {
        out: opts.out.clone(),
        checkpoint: opts.out.join(train::CHECKPOINT_FILE),
        step: opts.steps,
    })
}

/// `train classifier`.
#[derive(Clone, Debug)]
pub struct ClassifierOptions {
    /// The images and their labels.
    pub data: DataSpec,
    /// The run.
    pub run: RunOptions,
    /// Channels of the first conv.
    pub channels: usize,
}

/// Trains an image classifier on a labelled dataset, or continues one.
pub fn classifier(gpu: &Gpu, options: &ClassifierOptions) -> Result<TrainReport> {
    let fresh = |data: &dyn Dataset, _variance| {
        let classes = data.classes().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{} has no labels: a classifier needs them",
                options.data.dataset
            ))
        })?;
        let config = ClassifierConfig {
            image_shape: data.image_shape(),
            channels: options.channels,
            classes,
        };
        let run = &options.run;
        ClassifierTrainer::new(gpu, config, run.seed, run.lr, run.batch)
    };
    train_images(gpu, &options.data, &options.run, "classifier", fresh)
}

/// `train vqvae` and `train vqvae2` (whose model sizes are those of each level).
#[derive(Clone, Debug)]
pub struct VqVaeOptions {
    /// The images.
    pub data: DataSpec,
    /// The run.
    pub run: RunOptions,
    /// The model (its input channels are the dataset's).
    pub model: VqVaeConfig,
}

/// Trains a VQ-VAE, or continues one.
pub fn vqvae(gpu: &Gpu, options: &VqVaeOptions) -> Result<TrainReport> {
    quantized_images(gpu, options, "vqvae", VqVaeTrainer::new)
}

/// Trains a VQ-VAE-2, or continues one.
pub fn vqvae2(gpu: &Gpu, options: &VqVaeOptions) -> Result<TrainReport> {
    quantized_images(gpu, options, "vqvae2", Vqvae2Trainer::new)
}

/// A fresh trainer of a model sized by a [`VqVaeConfig`]: (gpu, config, seed, lr, batch, image
/// shape, data variance).
type NewQuantizedTrainer<S> =
    fn(&Gpu, VqVaeConfig, u64, f32, usize, [usize; 3], f32) -> Result<Trainer<S>>;

/// Trains (or continues) a model sized by a [`VqVaeConfig`] whose input channels are the
/// dataset's, under the run name `name`.
fn quantized_images<S>(
    gpu: &Gpu,
    options: &VqVaeOptions,
    name: &str,
    new: NewQuantizedTrainer<S>,
) -> Result<TrainReport>
where
    S: TrainStep<Data = dyn Dataset>,
    S::Metrics: Display,
{
    let fresh = |data: &dyn Dataset, variance| {
        let shape = data.image_shape();
        let model = VqVaeConfig {
            in_channels: shape[0],
            ..options.model.clone()
        };
        let run = &options.run;
        new(gpu, model, run.seed, run.lr, run.batch, shape, variance)
    };
    train_images(gpu, &options.data, &options.run, name, fresh)
}

/// `train ae | dae | vae`.
#[derive(Clone, Debug)]
pub struct AeOptions {
    /// The images.
    pub data: DataSpec,
    /// The run.
    pub run: RunOptions,
    /// The model (its image shape is the dataset's).
    pub model: AutoencoderConfig,
}

/// Trains an AE, denoising AE or VAE (as `options.model.kind` says), or continues one of the same
/// kind (another kind's run is refused by [`RunOptions::resumed_checkpoint`]).
pub fn autoencoder(gpu: &Gpu, options: &AeOptions) -> Result<TrainReport> {
    let fresh = |data: &dyn Dataset, variance| {
        let model = AutoencoderConfig {
            image_shape: data.image_shape(),
            ..options.model.clone()
        };
        let run = &options.run;
        AeTrainer::new(gpu, model, run.seed, run.lr, run.batch, variance)
    };
    let name = options.model.kind_name();
    train_images(gpu, &options.data, &options.run, name, fresh)
}

/// Trains an image model called `name` (its `train` command) on the train split of `data`: a
/// fresh one from `fresh` (given the data and its pixel variance), or the run `run` resumes.
fn train_images<S>(
    gpu: &Gpu,
    data: &DataSpec,
    run: &RunOptions,
    name: &str,
    fresh: impl FnOnce(&dyn Dataset, f32) -> Result<Trainer<S>>,
) -> Result<TrainReport>
where
    S: TrainStep<Data = dyn Dataset>,
    S::Metrics: Display,
{
    let dataset = data.describe();
    let resumed = run.resumed_checkpoint(name, &dataset)?;
    let images = data.open(Split::Train)?;
    let mut trainer = run.start(gpu, resumed, || {
        let variance = pixel_variance(images.as_ref(), VARIANCE_IMAGES) as f32;
        fresh(images.as_ref(), variance)
    })?;
    let opts = run.train_options(name, &dataset);
    eprintln!(
        "adapter: {}; {name}, {} parameters; {} steps of {} images from {} into {}",
        gpu.adapter_name(),
        trainer.task.params().count(),
        opts.steps,
        trainer.run.batch,
        data.dataset,
        opts.out.display()
    );
    fit(&mut trainer, images, &opts, "img")
}

/// `train prior`.
#[derive(Clone, Debug)]
pub struct PriorOptions {
    /// The code file of `encode`.
    pub codes: PathBuf,
    /// The run.
    pub run: RunOptions,
    /// The prior (its number of codes and classes are the code file's).
    pub model: PixelCnnConfig,
    /// Condition on the code file's labels.
    pub conditional: bool,
    /// Test grids whose NLL is measured at every log (all of them at the end).
    pub eval_grids: usize,
    /// Which grids of the code file: the only (or a VQ-VAE-2's bottom) ones, or the top ones.
    pub level: CodeLevel,
    /// Condition the prior over a VQ-VAE-2's bottom grids on its top grids (a resumed run keeps
    /// its own choice).
    pub condition_on_top: bool,
}

/// What a prior's training run left behind.
#[derive(Clone, Debug, PartialEq)]
pub struct PriorReport {
    /// The run.
    pub run: TrainReport,
    /// NLL over every test grid, nats per code.
    pub test_nll: f64,
}

/// The data a prior trained on the `level` grids of the code file `file` records: "codes of
/// shapes", "top codes of shapes".
pub(crate) fn prior_dataset(file: &Checkpoint, level: CodeLevel) -> String {
    format!(
        "{}codes of {}",
        match level {
            CodeLevel::Bottom => "",
            CodeLevel::Top => "top ",
        },
        file.meta("dataset").unwrap_or("unknown images")
    )
}

/// Trains a PixelCNN prior on a code file, or continues one; prints the NLL of the test split.
pub fn prior(gpu: &Gpu, options: &PriorOptions) -> Result<PriorReport> {
    let file = Checkpoint::load(&options.codes)?;
    let run = &options.run;
    // the data a prior's checkpoint records, so that a resume on other codes is refused
    let dataset = prior_dataset(&file, options.level);
    let resumed = run.resumed_checkpoint("prior", &dataset)?;
    let conditioned = match &resumed {
        Some(ck) => PixelCnn::from_checkpoint_config(ck)?.condition_codes > 0,
        None => options.condition_on_top,
    };
    if conditioned && options.level == CodeLevel::Top {
        return Err(Error::InvalidArgument(
            "--condition-on-top conditions a prior over the bottom grids: leave --level top out"
                .into(),
        ));
    }
    let load = |split: &str| -> Result<Arc<CodeGrids>> {
        let grids = CodeGrids::of_level(&file, split, options.level)?;
        Ok(Arc::new(if conditioned {
            grids.conditioned_on_top(&file, split)?
        } else {
            grids
        }))
    };
    let (train, test) = (load("train")?, load("test")?);
    let mut trainer = run.start(gpu, resumed, || {
        if options.conditional && train.labels.is_none() {
            return Err(Error::InvalidArgument(format!(
                "a conditional prior needs labels, and {} has none",
                options.codes.display()
            )));
        }
        let model = PixelCnnConfig {
            codes: train.codebook_size,
            classes: if options.conditional {
                train.classes
            } else {
                0
            },
            condition_codes: train.condition.as_ref().map_or(0, |c| c.codebook_size),
            ..options.model.clone()
        };
        PriorTrainer::new(gpu, model, run.seed, run.lr, run.batch, train.grid)
    })?;
    trainer
        .task
        .evaluate_at_logs(test.clone(), options.eval_grids)?;
    let opts = TrainOptions {
        sample_every: 0,
        ..run.train_options("prior", &dataset)
    };
    let k = train.codebook_size as f64;
    let unigram = train.unigram_entropy();
    eprintln!(
        "adapter: {}; {} parameters; {} train / {} test grids of {}x{} codes (K = {}{}); {} steps of {} into {}",
        gpu.adapter_name(),
        trainer.task.model.params.count(),
        train.len,
        test.len,
        train.grid[0],
        train.grid[1],
        train.codebook_size,
        match (trainer.task.model.config.classes, conditioned) {
            (0, false) => String::new(),
            (0, true) => ", conditioned on the top codes".into(),
            (c, false) => format!(", conditional on {c} classes"),
            (c, true) => format!(", conditional on {c} classes and the top codes"),
        },
        opts.steps,
        trainer.run.batch,
        opts.out.display()
    );
    eprintln!(
        "baselines: uniform log K = {:.4} nats ({:.3} bits); unigram entropy of the train codes = {unigram:.4} nats ({:.3} bits)",
        k.ln(),
        bits(k.ln()),
        bits(unigram)
    );
    let report = fit(&mut trainer, train, &opts, "grids")?;
    let progress = Progress::new(0, test.len as u64);
    let test_nll = trainer
        .task
        .evaluate_reporting(&test, usize::MAX, &mut |done| progress.advance(done as u64))?;
    drop(progress);
    println!(
        "test NLL over all {} grids: {test_nll:.4} nats = {:.3} bits per code (uniform {:.3} bits, unigram {:.3} bits)",
        test.len,
        bits(test_nll),
        bits(k.ln()),
        bits(unigram)
    );
    Ok(PriorReport {
        run: report,
        test_nll,
    })
}
