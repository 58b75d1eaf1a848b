//! Kernels only: each module owns the WGSL file of the same stem in `shaders/` (`ops/X.rs` owns
//! `shaders/X.wgsl`), names its bindings, checks shapes, launches its kernels and records their
//! backward passes. No model state lives here.

pub mod adam;
pub mod attention;
pub mod blocked;
pub mod collective;
pub mod collective_subgroups;
pub mod conv;
pub mod elementwise;
pub mod ema;
pub mod gather;
pub mod gemm;
pub mod latent;
pub mod reduce;
pub mod softmax;
pub mod texel;
pub mod vq;
pub mod window;

use crate::gpu::{Library, Shader};
use crate::tensor::{numel, Tensor};

/// What the last kernel of an op does with its result: where it writes it (a new tensor, or a
/// given one such as a parameter's gradient slot), whether it adds a residual tensor of the
/// result's layout, whether it then applies a ReLU, and whether it keeps the result only where a
/// gate tensor is positive.
#[derive(Clone, Copy, Default)]
pub(crate) struct Epilogue<'a> {
    /// The tensor to write instead of a new one.
    pub into: Option<&'a Tensor>,
    /// Store `max(result, 0)`.
    pub relu: bool,
    /// Store `residual + result`.
    pub residual: Option<&'a Tensor>,
    /// Store the result where `gate > 0`, else 0 (last): the gradient through a ReLU whose output
    /// is `gate`, laid out as the result. Never with `into`.
    pub gate: Option<&'a Tensor>,
}

impl<'a> Epilogue<'a> {
    /// Writes into `into` where it is given, adding nothing.
    pub fn into(into: Option<&'a Tensor>) -> Self {
        Self {
            into,
            ..Self::default()
        }
    }

    /// A new tensor: `residual + result` where a residual is given, then a ReLU when `relu`.
    pub fn new(residual: Option<&'a Tensor>, relu: bool) -> Self {
        Self {
            into: None,
            relu,
            residual,
            gate: None,
        }
    }

    /// A new tensor holding the result where `gate > 0`, else 0.
    pub fn gated(gate: Option<&'a Tensor>) -> Self {
        Self {
            gate,
            ..Self::default()
        }
    }

    /// The gate flag of the kernels' uniform blocks.
    pub(crate) fn gate_flag(&self) -> u32 {
        self.gate.is_some() as u32
    }

    /// The ReLU flag of the kernels' uniform blocks.
    pub(crate) fn relu_flag(&self) -> u32 {
        self.relu as u32
    }

    /// The residual flag of the kernels' uniform blocks.
    pub(crate) fn add_flag(&self) -> u32 {
        self.residual.is_some() as u32
    }

    /// The residual's and the gate's shape must be the result's, and a gated result is a new
    /// tensor.
    pub(crate) fn check_operands(&self, shape: &[usize]) {
        for (t, what) in [(self.residual, "residual"), (self.gate, "gate")] {
            if let Some(t) = t {
                assert_eq!(
                    t.numel(),
                    numel(shape),
                    "a {what} of shape {:?} does not fit a result of shape {shape:?}",
                    t.shape()
                );
            }
        }
        assert!(
            self.gate.is_none() || self.into.is_none(),
            "a gated result is a new tensor"
        );
    }
}

/// Every library of functions the kernel families call, for the shader tests.
pub static LIBRARIES: [&Library; 1] = [&collective::LIBRARY];

/// Every kernel family, for the shader tests: adding a family means adding its file in `shaders/`,
/// its module here, and its entry in this list.
pub static SHADERS: [&Shader; 13] = [
    &adam::SHADER,
    &attention::SHADER,
    &blocked::SHADER,
    &conv::SHADER,
    &elementwise::SHADER,
    &ema::SHADER,
    &gather::SHADER,
    &gemm::SHADER,
    &latent::SHADER,
    &reduce::SHADER,
    &softmax::SHADER,
    &vq::SHADER,
    &window::SHADER,
];
