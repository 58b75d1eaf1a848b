//! Models composed from `nn` layers.

pub mod pixelcnn;
pub mod quantizer;
pub mod trunk;
pub mod vqvae;
