//! The Adam optimizer over a [`ParamStore`]'s flat buffers: one dispatch per step.

use crate::error::Result;
use crate::io::checkpoint::Checkpoint;
use crate::nn::{FlatBuffer, ParamStore};
use crate::ops::adam::{adam_step, AdamHyper};

/// How the learning rate moves over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LrSchedule {
    /// The same rate at every step.
    #[default]
    Constant,
    /// Half a cosine from the full rate at the first step down towards 0 at the run's last
    /// (SGDR, Loshchilov & Hutter 2017, without restarts).
    Cosine,
}

impl LrSchedule {
    /// The name a checkpoint records.
    pub fn name(self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::Cosine => "cosine",
        }
    }

    /// The schedule called `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Constant, Self::Cosine]
            .into_iter()
            .find(|s| s.name() == name)
    }

    /// The rate of step `t` (1-based) of a run of `steps` steps whose full rate is `lr`.
    pub fn rate(self, lr: f32, t: u64, steps: u64) -> f32 {
        match self {
            Self::Constant => lr,
            Self::Cosine => {
                let done = t.saturating_sub(1).min(steps) as f64 / steps.max(1) as f64;
                (lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * done).cos())) as f32
            }
        }
    }
}

/// Adam (Kingma & Ba) with bias correction; PyTorch's defaults except the learning rate, which
/// follows a [`LrSchedule`] (constant unless set).
pub struct Adam {
    /// Hyper-parameters; `lr` is the full rate, which the schedule scales.
    pub hyper: AdamHyper,
    step: u64,
    schedule: LrSchedule,
    schedule_steps: u64,
}

impl Adam {
    /// Adam with betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn new(lr: f32) -> Self {
        Self {
            hyper: AdamHyper {
                lr,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            step: 0,
            schedule: LrSchedule::Constant,
            schedule_steps: 0,
        }
    }

    /// Makes the rate follow `schedule` over a run of `steps` steps.
    pub fn set_schedule(&mut self, schedule: LrSchedule, steps: u64) {
        self.schedule = schedule;
        self.schedule_steps = steps;
    }

    /// The schedule and the steps of the run it spans.
    pub fn schedule(&self) -> (LrSchedule, u64) {
        (self.schedule, self.schedule_steps)
    }

    /// The rate the next step takes.
    pub fn next_rate(&self) -> f32 {
        self.schedule
            .rate(self.hyper.lr, self.step + 1, self.schedule_steps)
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Sets the step counter (when resuming from a checkpoint).
    pub fn set_steps(&mut self, steps: u64) {
        self.step = steps;
    }

    /// Adds the moments of every parameter (`optimizer.m.{name}`, `optimizer.v.{name}`), the
    /// hyper-parameters, the schedule and the step counter to `ck`.
    pub fn write_state(&self, params: &ParamStore, ck: &mut Checkpoint) -> Result<()> {
        params.save_into(ck, FlatBuffer::FirstMoment, "optimizer.m.")?;
        params.save_into(ck, FlatBuffer::SecondMoment, "optimizer.v.")?;
        ck.set("lr", self.hyper.lr);
        ck.set("adam_beta1", self.hyper.beta1);
        ck.set("adam_beta2", self.hyper.beta2);
        ck.set("adam_eps", self.hyper.eps);
        ck.set("adam_step", self.step);
        ck.set("lr_schedule", self.schedule.name());
        ck.set("lr_schedule_steps", self.schedule_steps);
        Ok(())
    }

    /// The optimizer saved by [`Adam::write_state`], its moments loaded into `params`.
    pub fn read_state(params: &ParamStore, ck: &Checkpoint) -> Result<Self> {
        let mut adam = Self::new(ck.meta_parse("lr")?);
        adam.hyper.beta1 = ck.meta_parse("adam_beta1")?;
        adam.hyper.beta2 = ck.meta_parse("adam_beta2")?;
        adam.hyper.eps = ck.meta_parse("adam_eps")?;
        adam.step = ck.meta_parse("adam_step")?;
        // a checkpoint written before schedules existed trained at a constant rate
        let name = ck
            .meta("lr_schedule")
            .unwrap_or(LrSchedule::default().name());
        let schedule = LrSchedule::from_name(name).ok_or_else(|| {
            ck.error(format!(
                "records the learning-rate schedule {name:?}, which vqgpu does not have"
            ))
        })?;
        let steps = ck.meta_parse_or("lr_schedule_steps", 0)?;
        if schedule == LrSchedule::Cosine && steps == 0 {
            return Err(
                ck.error("records a cosine schedule over 0 steps: the file is damaged".into())
            );
        }
        adam.set_schedule(schedule, steps);
        params.load_from(ck, FlatBuffer::FirstMoment, "optimizer.m.")?;
        params.load_from(ck, FlatBuffer::SecondMoment, "optimizer.v.")?;
        Ok(adam)
    }

    /// Updates every parameter from its gradient, at the rate the schedule gives this step.
    pub fn step(&mut self, params: &ParamStore) {
        let _layer = crate::gpu::profile::layer("optimizer");
        let hyper = AdamHyper {
            lr: self.next_rate(),
            ..self.hyper
        };
        self.step += 1;
        let (values, grads, m, v) = params.flat_buffers();
        adam_step(values, grads, m, v, hyper, self.step);
    }
}
