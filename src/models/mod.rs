//! Models composed from `nn` layers.

pub mod quantizer;
pub mod vqvae;
