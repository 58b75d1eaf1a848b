//! What every training run owns, whatever the model: the optimizer, the step, the seed, the batch
//! size and the GPU-side sums of its metrics; and how they go into a checkpoint and come back.

use crate::error::{Error, Result, Setting};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::nn::{Adam, LrSchedule, ParamStore};
use crate::ops::elementwise;
use crate::tensor::Tensor;

use super::MetricTerms;

/// Floats per metric slot: 256 bytes, so that every slot can be bound on its own.
const SLOT: usize = 64;
/// Metric slots of a run (slot 0 is the loss).
pub const METRIC_SLOTS: usize = 4;

/// The optimizer, counters and metric sums of a run.
pub struct RunState {
    /// The optimizer.
    pub adam: Adam,
    /// Steps taken.
    pub step: u64,
    /// Seed of the initialisation, the data order and the GPU noise.
    pub seed: u64,
    /// Items (images or code grids) per step.
    pub batch: usize,
    metrics: Tensor,
    steps_in_metrics: u64,
}

/// The metric sums of the steps since the last read-back.
pub struct MetricSums {
    values: Vec<f32>,
    /// Steps summed.
    pub steps: u64,
}

impl MetricSums {
    /// Element `i` of slot `slot`, summed over the steps.
    pub fn sum(&self, slot: usize, i: usize) -> f32 {
        self.values[slot * SLOT + i]
    }

    /// Element `i` of slot `slot`, averaged over the steps.
    pub fn mean(&self, slot: usize, i: usize) -> f32 {
        self.sum(slot, i) / self.steps as f32
    }
}

impl RunState {
    /// A fresh run: Adam with learning rate `lr`, step 0. Refuses a zero batch and a learning rate
    /// that is not a positive number.
    pub fn new(gpu: &Gpu, seed: u64, lr: f32, batch: usize) -> Result<Self> {
        Setting::Batch.require_positive(batch as u64)?;
        check_learning_rate(lr)?;
        Ok(Self {
            adam: Adam::new(lr),
            step: 0,
            seed,
            batch,
            metrics: Tensor::zeros(gpu, &[METRIC_SLOTS * SLOT]),
            steps_in_metrics: 0,
        })
    }

    /// The key of this step's GPU noise: a function of (seed, step), so a resumed run draws the
    /// same noise.
    pub fn noise_key(&self) -> u64 {
        self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.step
    }

    /// Adds this step's metric terms to the GPU sums: the loss into slot 0 and `metrics[i]` into
    /// slot i + 1 (each at most 64 values; [`MetricTerms`] holds no more than the slots after the
    /// loss); `None` leaves a slot alone.
    pub(super) fn accumulate(&mut self, loss: &Tensor, metrics: &MetricTerms) {
        let terms = std::iter::once(Some(loss)).chain(metrics.iter().map(Option::as_ref));
        for (slot, term) in terms.enumerate() {
            if let Some(t) = term {
                let sum = self.metrics.view(slot * SLOT, &[t.numel()], None);
                elementwise::accumulate(&sum, &t.detach(), 1.0);
            }
        }
        self.steps_in_metrics += 1;
    }

    /// Reads back and resets the metric sums (a sync point); `None` if no step ran since the last
    /// read. A loss (slot 0) that is not finite is an error.
    pub(super) fn take_sums(&mut self) -> Result<Option<MetricSums>> {
        if self.steps_in_metrics == 0 {
            return Ok(None);
        }
        let sums = MetricSums {
            values: self.metrics.to_vec()?,
            steps: self.steps_in_metrics,
        };
        elementwise::fill(&self.metrics, 0.0);
        self.steps_in_metrics = 0;
        if !sums.sum(0, 0).is_finite() {
            return Err(Error::Diverged {
                step: self.step,
                loss: sums.sum(0, 0) as f64 / sums.steps as f64,
            });
        }
        Ok(Some(sums))
    }

    /// Fails if the loss summed since the last read-back is not a finite number (a read-back of the
    /// sums, which are kept); checked before every save.
    pub(super) fn check_loss(&self) -> Result<()> {
        if self.steps_in_metrics == 0 {
            return Ok(());
        }
        let loss = self.metrics.view(0, &[1], None).to_vec()?[0];
        if !loss.is_finite() {
            return Err(Error::Diverged {
                step: self.step,
                loss: loss as f64 / self.steps_in_metrics as f64,
            });
        }
        Ok(())
    }

    /// Checks that this run can train until step `steps`: refuses a step it has already reached,
    /// or one past the end of its cosine schedule.
    pub fn check_steps(&self, steps: u64) -> Result<()> {
        Setting::Steps.require_positive(steps)?;
        let reached = self.step;
        if reached >= steps {
            let why = format!("must be above the checkpoint's step {reached} to continue it");
            return Err(Error::setting(Setting::Steps, why));
        }
        match self.adam.schedule() {
            (LrSchedule::Cosine, end) if steps > end => Err(Error::setting(
                Setting::Steps,
                format!("must be at most {end}: the run's cosine learning-rate schedule ends at step {end}"),
            )),
            _ => Ok(()),
        }
    }

    /// Adds Adam's state (learning rate included) and the step, seed and batch to `ck`.
    pub fn write(&self, params: &ParamStore, ck: &mut Checkpoint) -> Result<()> {
        self.adam.write_state(params, ck)?;
        ck.set("step", self.step);
        ck.set("seed", self.seed);
        ck.set("batch", self.batch);
        Ok(())
    }

    /// The run saved in `ck`, before its model exists: seed, learning rate and batch. Its
    /// optimizer state and step come back with [`RunState::restore`] once the model is built.
    /// A learning rate or batch size the checkpoint holds that no run could have is a damaged
    /// checkpoint, not a bad flag.
    pub fn from_checkpoint(gpu: &Gpu, ck: &Checkpoint) -> Result<Self> {
        let (lr, batch): (f32, usize) = (ck.meta_parse("lr")?, ck.meta_parse("batch")?);
        Self::new(gpu, ck.meta_parse("seed")?, lr, batch).map_err(|_| {
            ck.error(format!(
                "records learning rate {lr} and batch {batch}, which no run can have: the file is damaged"
            ))
        })
    }

    /// Loads Adam's moments into `params` and takes Adam's state and the step from `ck`.
    pub fn restore(&mut self, params: &ParamStore, ck: &Checkpoint) -> Result<()> {
        self.adam = Adam::read_state(params, ck)?;
        self.step = ck.meta_parse("step")?;
        Ok(())
    }
}

/// Refuses a learning rate that is not a positive number.
pub fn check_learning_rate(lr: f32) -> Result<()> {
    if !(lr > 0.0 && lr.is_finite()) {
        return Err(Error::setting(
            Setting::LearningRate,
            format!("must be a positive number, got {lr}"),
        ));
    }
    Ok(())
}

/// Refuses a model whose largest activation (`largest_bytes`) exceeds the adapter's
/// storage-binding limit, before any step.
pub fn check_fits(gpu: &Gpu, largest_bytes: usize) -> Result<()> {
    if largest_bytes as u64 > gpu.max_binding_bytes() {
        return Err(Error::BufferTooLarge {
            requested: largest_bytes as u64,
            limit: gpu.max_binding_bytes(),
            which: "max_storage_buffer_binding_size",
        });
    }
    Ok(())
}
