//! Models composed from `nn` layers.

pub mod autoencoder;
pub mod pixelcnn;
pub mod quantizer;
pub mod trunk;
pub mod vqvae;
