//! `bench kernels | quantizer | vqvae | prior`: kernel microbenchmarks, training throughput and
//! step profiles. Each kernel row is the median over repeats of the time per call of many calls
//! recorded back to back, timed with GPU timestamps where the adapter has them.

mod kernels;
mod matching_gemm;
mod prior;
pub mod profile;
mod quantizer;
mod throughput;
mod vqvae;

pub use kernels::{kernels, run as run_kernels, BenchRow};
pub use matching_gemm::MatchingGemm;
pub use prior::{
    prior, prior_reporting, run as run_prior, Measured, PriorBench, PriorBenchOptions,
};
pub use quantizer::{
    default_grid as default_quantizer_grid, quantizer, run as run_quantizer, QuantizerOptions,
    QuantizerRow,
};
pub use throughput::Throughput;
pub use vqvae::{run as run_vqvae, vqvae, VqVaeBench, VqVaeBenchOptions, PHASES};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result, Setting};
use crate::gpu::timing::{Clock, GpuTimer};
use crate::gpu::Gpu;
use crate::tensor::Tensor;
use crate::train::check_fits;

/// How long and how large to benchmark.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Batch size of the convolution shapes.
    pub batch: usize,
    /// Calls recorded per timed repeat.
    pub iters: usize,
    /// Timed repeats; the median is reported.
    pub repeats: usize,
    /// Square GEMM sizes.
    pub gemm_sizes: Vec<usize>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            batch: 32,
            iters: 20,
            repeats: 5,
            gemm_sizes: vec![512, 1024, 2048],
        }
    }
}

/// The elements of a tensor of `shape`, or an error where its f32 values would not fit one buffer
/// the adapter binds: benchmark sizes come from flags, and are checked before anything is
/// allocated.
fn elements_that_fit(gpu: &Gpu, shape: &[usize]) -> Result<usize> {
    let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    // a count that overflows is past any limit; one that passes the check did not overflow
    check_fits(gpu, n.and_then(|n| n.checked_mul(4)).unwrap_or(usize::MAX))?;
    Ok(n.unwrap_or(usize::MAX))
}

/// A tensor of `shape` uniform in [-1, 1) (see [`elements_that_fit`]).
fn random(gpu: &Gpu, rng: &mut ChaCha8Rng, shape: &[usize]) -> Result<Tensor> {
    let n = elements_that_fit(gpu, shape)?;
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_slice(gpu, shape, &data)
}

/// Times `launch` (which records one call) and returns the median seconds per call.
fn time_calls(gpu: &Gpu, cfg: &BenchConfig, launch: &dyn Fn()) -> Result<f64> {
    launch(); // compile pipelines and fill the buffer pool
    gpu.sync()?;
    let mut timer = GpuTimer::new(gpu);
    let mut samples = Vec::with_capacity(cfg.repeats);
    for _ in 0..cfg.repeats.max(1) {
        timer.start(gpu)?;
        for _ in 0..cfg.iters.max(1) {
            launch();
        }
        samples.push(timer.stop(gpu)? / cfg.iters.max(1) as f64);
    }
    Ok(median(&samples))
}

/// The middle value of `values` (the upper middle of an even count): what every benchmark row
/// reports.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

impl BenchConfig {
    /// Refuses zero iterations or batch, and repeats outside 1 to [`MAX_REPEATS`].
    pub fn validate(&self) -> Result<()> {
        for (setting, value) in [(Setting::Batch, self.batch), (Setting::Iters, self.iters)] {
            setting.require_positive(value as u64)?;
        }
        check_repeats(self.repeats)
    }
}

/// The most timed repeats a benchmark takes (`--repeats`).
pub const MAX_REPEATS: usize = 1000;

/// Refuses a repeat count outside 1 to [`MAX_REPEATS`].
fn check_repeats(repeats: usize) -> Result<()> {
    Setting::Repeats.require_positive(repeats as u64)?;
    if repeats > MAX_REPEATS {
        return Err(Error::setting(
            Setting::Repeats,
            format!("must be at most {MAX_REPEATS}, got {repeats}"),
        ));
    }
    Ok(())
}

/// Which clock the benchmark rows are measured with on this GPU.
pub fn clock(gpu: &Gpu) -> Clock {
    if gpu.features().timestamp_query {
        Clock::GpuTimestamps
    } else {
        Clock::WallClock
    }
}

/// The adapter, its backend and driver, and the clock, for the header of a benchmark.
fn adapter_line(gpu: &Gpu) -> String {
    let info = &gpu.report().info;
    format!(
        "adapter: {} ({:?}, driver {} {}); kernels: {}; clock: {:?}",
        info.name,
        info.backend,
        info.driver,
        info.driver_info,
        gpu.kernel_set(),
        clock(gpu)
    )
}
