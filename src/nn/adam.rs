//! The Adam optimizer over a [`ParamStore`]'s flat buffers: one dispatch per step.

use crate::nn::ParamStore;
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

    /// Updates every parameter from its gradient.
    pub fn step(&mut self, params: &ParamStore) {
        self.step += 1;
        let (values, grads, m, v) = params.flat_buffers();
        adam_step(values, grads, m, v, self.hyper, self.step);
    }
}
