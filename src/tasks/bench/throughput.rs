//! Training throughput over several timed runs of whole steps: `bench vqvae` and `bench prior`
//! report the median run and the range, so that one slow or fast run on a shared machine does not
//! stand for the whole.

use super::{check_repeats, median};
use crate::error::{Result, Setting};
use crate::gpu::timing::GpuTimer;
use crate::gpu::Gpu;

/// Training steps run before the timed runs (pipelines compiled, the buffer pool filled).
const WARM_UP_STEPS: usize = 3;

/// Items (images or code grids) trained per second, run by run.
#[derive(Clone, Debug, PartialEq)]
pub struct Throughput {
    /// Each run's items per second by the GPU clock, in the order they ran.
    pub runs: Vec<f64>,
    /// Each run's items per second by the host's wall clock (what a user waits), in the same
    /// order.
    pub wall_runs: Vec<f64>,
}

impl Throughput {
    /// The median run by the GPU clock (of an even count, the faster of the middle two).
    pub fn median(&self) -> f64 {
        median(&self.runs)
    }

    /// The median run by the wall clock.
    pub fn wall_median(&self) -> f64 {
        median(&self.wall_runs)
    }

    /// The slowest and the fastest run by the GPU clock.
    pub fn range(&self) -> (f64, f64) {
        self.runs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                (lo.min(r), hi.max(r))
            })
    }

    /// How the median was taken, for a report line: "one run", or "median of 3 runs: 205.1 to
    /// 222.3" (the range by the GPU clock, in the items' unit).
    pub fn spread(&self) -> String {
        match self.runs.len() {
            1 => "one run".into(),
            n => {
                let (lo, hi) = self.range();
                format!("median of {n} runs: {lo:.1} to {hi:.1}")
            }
        }
    }
}

/// Runs `step` (one whole training step of `items` items) [`WARM_UP_STEPS`] times, then `repeats`
/// timed runs of `steps` steps each; returns each run's items per second by both clocks. Each
/// step ends as the training loop ends it ([`Gpu::end_step`]: on a GPU the host records the next
/// step while the GPU runs this one, on a CPU adapter it waits), so these are the rates training
/// runs at.
pub(super) fn time_steps(
    gpu: &Gpu,
    (steps, repeats, items): (usize, usize, usize),
    step: &mut dyn FnMut() -> Result<()>,
) -> Result<Throughput> {
    Setting::Steps.require_positive(steps as u64)?;
    check_repeats(repeats)?;
    for _ in 0..WARM_UP_STEPS {
        step()?;
    }
    let trained = steps as f64 * items as f64;
    let mut timer = GpuTimer::new(gpu);
    let mut out = Throughput {
        runs: Vec::with_capacity(repeats),
        wall_runs: Vec::with_capacity(repeats),
    };
    for _ in 0..repeats {
        timer.start(gpu)?;
        let wall = std::time::Instant::now();
        for _ in 0..steps {
            step()?;
            gpu.end_step();
        }
        let seconds = timer.stop(gpu)?;
        out.runs.push(trained / seconds);
        out.wall_runs.push(trained / wall.elapsed().as_secs_f64());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throughput(runs: &[f64]) -> Throughput {
        Throughput {
            runs: runs.to_vec(),
            wall_runs: runs.iter().map(|r| r / 2.0).collect(),
        }
    }

    #[test]
    fn median_and_range_of_the_runs() {
        let t = throughput(&[210.0, 180.0, 240.0]);
        assert_eq!(t.median(), 210.0);
        assert_eq!(t.wall_median(), 105.0);
        assert_eq!(t.range(), (180.0, 240.0));
        assert_eq!(t.spread(), "median of 3 runs: 180.0 to 240.0");
        // an even count takes the faster middle run, as the kernel rows do
        assert_eq!(throughput(&[4.0, 1.0, 3.0, 2.0]).median(), 3.0);
        let one = throughput(&[7.5]);
        assert_eq!((one.median(), one.range()), (7.5, (7.5, 7.5)));
        assert_eq!(one.spread(), "one run");
    }
}
