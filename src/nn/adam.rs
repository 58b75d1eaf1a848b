//! The Adam optimizer over a [`ParamStore`]'s flat buffers: one dispatch per step.

use crate::error::Result;
use crate::io::checkpoint::Checkpoint;
use crate::nn::{FlatBuffer, ParamStore};
use crate::ops::adam::{adam_step, AdamHyper};

/// Adam (Kingma & Ba) with bias correction; PyTorch's defaults except the learning rate.
pub struct Adam {
    /// Hyper-parameters.
    pub hyper: AdamHyper,
    step: u64,
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
        }
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
    /// hyper-parameters and the step counter to `ck`.
    pub fn write_state(&self, params: &ParamStore, ck: &mut Checkpoint) -> Result<()> {
        params.save_into(ck, FlatBuffer::FirstMoment, "optimizer.m.")?;
        params.save_into(ck, FlatBuffer::SecondMoment, "optimizer.v.")?;
        ck.set("lr", self.hyper.lr);
        ck.set("adam_beta1", self.hyper.beta1);
        ck.set("adam_beta2", self.hyper.beta2);
        ck.set("adam_eps", self.hyper.eps);
        ck.set("adam_step", self.step);
        Ok(())
    }

    /// The optimizer saved by [`Adam::write_state`], its moments loaded into `params`.
    pub fn read_state(params: &ParamStore, ck: &Checkpoint) -> Result<Self> {
        let mut adam = Self::new(ck.meta_parse("lr")?);
        adam.hyper.beta1 = ck.meta_parse("adam_beta1")?;
        adam.hyper.beta2 = ck.meta_parse("adam_beta2")?;
        adam.hyper.eps = ck.meta_parse("adam_eps")?;
        adam.step = ck.meta_parse("adam_step")?;
        params.load_from(ck, FlatBuffer::FirstMoment, "optimizer.m.")?;
        params.load_from(ck, FlatBuffer::SecondMoment, "optimizer.v.")?;
        Ok(adam)
    }

    /// Updates every parameter from its gradient.
    pub fn step(&mut self, params: &ParamStore) {
        let _layer = crate::gpu::profile::layer("optimizer");
        self.step += 1;
        let (values, grads, m, v) = params.flat_buffers();
        adam_step(values, grads, m, v, self.hyper, self.step);
    }
}
