//! `bench prior`: training throughput of the Gated PixelCNN prior on random code grids (grids/s)
//! and its sampling speed (samples/s), with an optional profile of one training step.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::Batch;
use crate::error::{Result, Setting};
use crate::gpu::Gpu;
use crate::models::pixelcnn::PixelCnnConfig;
use crate::tasks::sample::{Prior, Sampler};
use crate::train::PriorTrainer;

use super::profile::{self, StepProfile};
use super::{adapter_line, time_steps};

/// The prior and the length of `bench prior`.
#[derive(Clone, Debug)]
pub struct PriorBenchOptions {
    /// Code grids per training step.
    pub batch: usize,
    /// Timed training steps.
    pub steps: usize,
    /// Grid (height, width).
    pub grid: [usize; 2],
    /// Grids drawn at once when sampling.
    pub samples: usize,
    /// The prior (`codes` is the codebook size K).
    pub model: PixelCnnConfig,
    /// Also profile one training step launch by launch.
    pub profile: bool,
}

/// What `bench prior` measured.
#[derive(Clone, Debug)]
pub struct PriorBench {
    /// Training grids per second by the GPU clock.
    pub grids_per_s: f64,
    /// The same by the wall clock.
    pub wall_grids_per_s: f64,
    /// Samples per second (whole grids drawn position by position, wall clock).
    pub samples_per_s: f64,
    /// The profile of one training step, when asked for.
    pub profile: Option<StepProfile>,
}

/// Trains the prior on random codes for `steps` steps after 3 warm-up steps, then draws
/// `samples` grids once to warm up and once timed.
pub fn prior(gpu: &Gpu, options: &PriorBenchOptions) -> Result<PriorBench> {
    let (batch, grid) = (options.batch, options.grid);
    Setting::Batch.require_positive(batch as u64)?;
    Setting::Steps.require_positive(options.steps as u64)?;
    Setting::Count.require_positive(options.samples as u64)?;
    options.model.validate()?;
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
    let (seconds, wall_seconds) =
        time_steps(gpu, options.steps, &mut || trainer.train_step(&grids))?;
    trainer.take_metrics()?;
    let profile = if options.profile {
        let p = profile::profile_step(gpu, &mut || trainer.train_step(&grids))?;
        trainer.take_metrics()?;
        Some(p)
    } else {
        None
    };
    let model = Prior {
        model: trainer.task.model,
        grid,
    };
    model.sample_codes(Sampler::Full, options.samples, None, 1.0, 0)?;
    gpu.sync()?;
    let t0 = Instant::now();
    model.sample_codes(Sampler::Full, options.samples, None, 1.0, 1)?;
    gpu.sync()?;
    let sample_seconds = t0.elapsed().as_secs_f64();
    let trained = (options.steps * batch) as f64;
    Ok(PriorBench {
        grids_per_s: trained / seconds,
        wall_grids_per_s: trained / wall_seconds,
        samples_per_s: options.samples as f64 / sample_seconds,
        profile,
    })
}

/// `bench prior`: prints training and sampling speed (and the profile).
pub fn run(gpu: &Gpu, options: &PriorBenchOptions) -> Result<PriorBench> {
    let m = &options.model;
    println!(
        "{}; batch {}, {} steps, {}x{} grids of {} codes, {} channels, {} layers, kernel {}",
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
    let r = prior(gpu, options)?;
    println!(
        "training: {:.1} grids/s by the GPU clock ({:.2} ms per step), {:.1} grids/s by the wall clock",
        r.grids_per_s,
        options.batch as f64 / r.grids_per_s * 1e3,
        r.wall_grids_per_s
    );
    println!(
        "sampling: {:.2} samples/s ({} grids at once, one forward pass per position, wall clock)",
        r.samples_per_s, options.samples
    );
    if let Some(p) = &r.profile {
        profile::print(p);
    }
    Ok(r)
}
