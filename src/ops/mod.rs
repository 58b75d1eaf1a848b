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
