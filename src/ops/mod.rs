//! Kernels only: each module owns the WGSL file of the same stem in `shaders/` (`ops/X.rs` owns
//! `shaders/X.wgsl`), names its bindings, checks shapes, launches its kernels and records their
//! backward passes. No model state lives here.

pub mod adam;
pub mod attention;
pub mod blocked;
pub mod conv;
pub mod elementwise;
pub mod ema;
pub mod gather;
pub mod gemm;
pub mod latent;
pub mod reduce;
pub mod softmax;
pub mod vq;
pub mod window;

use crate::gpu::Shader;
use crate::tensor::Tensor;

/// What the last kernel of an op does with its result: where it writes it (a new tensor, or a
/// given one such as a parameter's gradient slot) and whether it applies a ReLU on the way.
#[derive(Clone, Copy, Default)]
pub(crate) struct Epilogue<'a> {
    /// The tensor to write instead of a new one.
    pub into: Option<&'a Tensor>,
    /// Store `max(result, 0)`.
    pub relu: bool,
}

impl<'a> Epilogue<'a> {
    /// Writes into `into` where it is given, with no ReLU.
    pub fn into(into: Option<&'a Tensor>) -> Self {
        Self { into, relu: false }
    }

    /// A new tensor, with a ReLU when `relu`.
    pub fn relu(relu: bool) -> Self {
        Self { into: None, relu }
    }

    /// The flag of the kernels' uniform blocks.
    pub(crate) fn relu_flag(&self) -> u32 {
        self.relu as u32
    }
}

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
