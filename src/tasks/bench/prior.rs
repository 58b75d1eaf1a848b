//! `bench prior`: training throughput of the Gated PixelCNN prior on random code grids (grids/s)
//! and its sampling speed (samples/s), with an optional profile of one training step.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::Batch;
use crate::error::{Error, Result, Setting};
use crate::gpu::Gpu;
use crate::models::pixelcnn::PixelCnnConfig;
use crate::tasks::sample::{Draw, Prior, Sampler};
use crate::train::PriorTrainer;

use super::profile::{self, StepProfile};
use super::throughput::{time_steps, Throughput};
use super::{adapter_line, check_repeats};

/// The prior and the length of `bench prior`.
#[derive(Clone, Debug)]
pub struct PriorBenchOptions {
    /// Code grids per training step.
    pub batch: usize,
    /// Timed training steps per run.
    pub steps: usize,
    /// Timed training runs (the median is reported).
    pub repeats: usize,
    /// Grid (height, width).
    pub grid: [usize; 2],
    /// Grids drawn at once when sampling.
    pub samples: usize,
    /// Sides of the square grids sampling is timed on (the prior is convolutional: any size).
    pub sample_sides: Vec<usize>,
    /// The samplers timed.
    pub samplers: Vec<Sampler>,
    /// Time the full sampler on this many positions of each grid and scale to the whole grid
    /// (each of its positions is one identical forward pass); `None`: whole grids.
    pub full_positions: Option<usize>,
    /// The prior (`codes` is the codebook size K).
    pub model: PixelCnnConfig,
    /// Also profile one training step launch by launch.
    pub profile: bool,
}

/// What `bench prior` measured.
#[derive(Clone, Debug)]
pub struct PriorBench {
    /// Training grids per second of each timed run.
    pub training: Throughput,
    /// Sampling speed per grid size and sampler.
    pub sampling: Vec<SamplingSpeed>,
    /// The profile of one training step, when asked for.
    pub profile: Option<StepProfile>,
}

/// The largest side of a grid `bench prior` trains on or samples.
const MAX_SIDE: usize = 256;

/// How fast one sampler draws grids of one size.
#[derive(Clone, Debug)]
pub struct SamplingSpeed {
    /// Side of the square grid.
    pub side: usize,
    /// The sampler.
    pub sampler: Sampler,
    /// Samples (whole grids) per second, by the wall clock.
    pub samples_per_s: f64,
    /// Positions of each grid actually drawn while timing (fewer than side^2: scaled up).
    pub positions_timed: usize,
}

/// What [`prior_reporting`] has measured, reported as it goes (so that a long run prints each
/// result when it has it).
#[derive(Clone, Copy, Debug)]
pub enum Measured<'a> {
    /// Training was timed: grids per second of each run.
    Training(&'a Throughput),
    /// A sampler is about to be timed drawing `positions` positions of grids of `side` x `side`.
    SamplingStarts {
        /// Side of the square grid.
        side: usize,
        /// The sampler.
        sampler: Sampler,
        /// Positions of each grid it will draw.
        positions: usize,
    },
    /// A sampler was timed: every speed measured so far, the newest last.
    Sampled(&'a [SamplingSpeed]),
}

/// Positions of each `side` x `side` grid that `sampler` draws while timed.
fn positions_timed(options: &PriorBenchOptions, side: usize, sampler: Sampler) -> usize {
    match (sampler, options.full_positions) {
        (Sampler::Full, Some(p)) => p.clamp(1, side * side),
        _ => side * side,
    }
}

/// Times `sampler` drawing `options.samples` grids of `side` x `side` (after an untimed draw of a
/// 2x2 grid that compiles its kernels).
fn time_sampling(
    gpu: &Gpu,
    prior: &mut Prior,
    options: &PriorBenchOptions,
    side: usize,
    sampler: Sampler,
) -> Result<SamplingSpeed> {
    let count = options.samples;
    prior.grid = [2, 2];
    prior.sample_codes(sampler, count, None, 1.0, 0, 0)?;
    prior.grid = [side, side];
    let positions = positions_timed(options, side, sampler);
    gpu.sync()?;
    let t0 = Instant::now();
    let draw = Draw {
        sampler,
        count,
        labels: None,
        condition: None,
        temperature: 1.0,
        seed: 1,
        first: 0,
    };
    prior.draw_first(&draw, positions, &mut |_| Ok(()))?;
    gpu.sync()?;
    let seconds = t0.elapsed().as_secs_f64() * (side * side) as f64 / positions as f64;
    Ok(SamplingSpeed {
        side,
        sampler,
        samples_per_s: count as f64 / seconds,
        positions_timed: positions,
    })
}

/// Trains the prior on random codes: 3 warm-up steps, then `repeats` timed runs of `steps` steps.
/// Then draws `samples` grids once to warm up and once timed, with each sampler on each grid size
/// (the full sampler first on each size).
pub fn prior(gpu: &Gpu, options: &PriorBenchOptions) -> Result<PriorBench> {
    prior_reporting(gpu, options, &mut |_| {})
}

/// [`prior`], calling `report` with each result as soon as it is measured, and before each
/// sampler is timed.
pub fn prior_reporting(
    gpu: &Gpu,
    options: &PriorBenchOptions,
    report: &mut dyn FnMut(Measured),
) -> Result<PriorBench> {
    let (batch, grid) = (options.batch, options.grid);
    Setting::Batch.require_positive(batch as u64)?;
    Setting::Steps.require_positive(options.steps as u64)?;
    check_repeats(options.repeats)?;
    Setting::Samples.require_positive(options.samples as u64)?;
    options.model.validate()?;
    // every grid size is checked before the training is timed, not after
    let training_sides = grid.into_iter().map(|side| (Setting::Grid, side));
    let sampled_sides = options
        .sample_sides
        .iter()
        .map(|&side| (Setting::SampleGrids, side));
    for (setting, side) in training_sides.chain(sampled_sides) {
        if !(1..=MAX_SIDE).contains(&side) {
            return Err(Error::setting(
                setting,
                format!("must be 1 to {MAX_SIDE}, got {side}"),
            ));
        }
        options.model.check_grid([side, side])?;
    }
    let mut trainer = PriorTrainer::new(gpu, options.model.clone(), 0, 3e-4, batch, grid)?;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let codes = options.model.codes;
    let grids = Batch {
        step: 0,
        inputs: (0..batch * grid[0] * grid[1])
            .map(|_| rng.random_range(0..codes) as f32)
            .collect(),
        labels: Vec::new(),
    };
    let training = time_steps(gpu, (options.steps, options.repeats, batch), &mut || {
        trainer.train_step(&grids)
    })?;
    trainer.take_metrics()?;
    report(Measured::Training(&training));
    let profile = if options.profile {
        let p = profile::profile_step(gpu, &mut || trainer.train_step(&grids))?;
        trainer.take_metrics()?;
        Some(p)
    } else {
        None
    };
    let mut prior = Prior {
        model: trainer.task.model,
        grid,
    };
    let mut sampling = Vec::new();
    for &side in &options.sample_sides {
        // the full sampler first: the others' speed-ups are against it
        let full_first = options.samplers.iter().filter(|&&s| s == Sampler::Full);
        let others = options.samplers.iter().filter(|&&s| s != Sampler::Full);
        for &sampler in full_first.chain(others) {
            report(Measured::SamplingStarts {
                side,
                sampler,
                positions: positions_timed(options, side, sampler),
            });
            sampling.push(time_sampling(gpu, &mut prior, options, side, sampler)?);
            report(Measured::Sampled(&sampling));
        }
    }
    Ok(PriorBench {
        training,
        sampling,
        profile,
    })
}

/// `bench prior`: prints training and sampling speed (and the profile).
pub fn run(gpu: &Gpu, options: &PriorBenchOptions) -> Result<PriorBench> {
    let m = &options.model;
    println!(
        "{}; batch {}, {} steps a run, {}x{} grids of {} codes, {} channels, {} layers, kernel {}",
        adapter_line(gpu),
        options.batch,
        options.steps,
        options.grid[0],
        options.grid[1],
        m.codes,
        m.channels,
        m.layers,
        m.kernel
    );
    let r = prior_reporting(gpu, options, &mut |measured| match measured {
        Measured::Training(t) => {
            println!(
                "training: {:.1} grids/s by the GPU clock ({:.2} ms per step; {}), {:.1} grids/s by the wall clock",
                t.median(),
                options.batch as f64 / t.median() * 1e3,
                t.spread(),
                t.wall_median(),
            );
            println!(
                "sampling: {} grids at once, wall clock; the prior is the one trained above",
                options.samples
            );
            println!(
                "  {:>7}  {:>8}  {:>12}  {:>9}  {:>8}",
                "grid", "sampler", "samples/s", "ms/grid", "speed-up"
            );
        }
        Measured::SamplingStarts {
            side,
            sampler,
            positions,
        } => eprintln!(
            "timing the {} sampler: {} grids of {side}x{side}, {positions} positions each",
            sampler.name(),
            options.samples
        ),
        Measured::Sampled(timed) => {
            if let Some((newest, earlier)) = timed.split_last() {
                print_sampling_row(newest, earlier);
            }
        }
    })?;
    if let Some(p) = &r.profile {
        profile::print(p);
    }
    Ok(r)
}

/// One row of the sampling table: `s`, with its speed-up over the full sampler on the same grid
/// size where `earlier` has it.
fn print_sampling_row(s: &SamplingSpeed, earlier: &[SamplingSpeed]) {
    let full = earlier
        .iter()
        .find(|f| f.side == s.side && f.sampler == Sampler::Full);
    let speed_up = full.map_or(String::new(), |f| {
        format!("{:.1}x", s.samples_per_s / f.samples_per_s)
    });
    let scaled = if s.positions_timed < s.side * s.side {
        format!(
            "  (timed on {} of {} positions, scaled)",
            s.positions_timed,
            s.side * s.side
        )
    } else {
        String::new()
    };
    println!(
        "  {:>7}  {:>8}  {:>12.3}  {:>9.1}  {:>8}{scaled}",
        format!("{0}x{0}", s.side),
        s.sampler.name(),
        s.samples_per_s,
        1e3 / s.samples_per_s,
        speed_up
    );
}
