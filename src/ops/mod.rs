//! Host side of each shader family: shape checks, kernel launches, and the backward each op records.

pub mod adam;
pub mod conv;
pub mod elementwise;
pub mod ema;
pub mod gemm;
pub mod latent;
pub mod reduce;
pub mod softmax;
pub mod vq;
