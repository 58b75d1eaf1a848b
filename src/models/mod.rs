//! Models composed from `nn` layers: the conv trunk, the VQ-VAE, its relatives (AE, denoising AE,
//! VAE), the Gated PixelCNN prior and the image classifier that scores samples.

pub mod autoencoder;
pub mod classifier;
pub mod pixelcnn;
pub mod trunk;
pub mod vqvae;

use crate::error::{Error, Result, Setting};
use trunk::TrunkSizes;

/// Checks the sizes of a conv trunk: an even number of channels, a positive residual width.
fn check_trunk(sizes: &TrunkSizes) -> Result<()> {
    if sizes.hidden < 2 || !sizes.hidden.is_multiple_of(2) {
        return Err(Error::setting(
            Setting::Hidden,
            format!("must be an even number >= 2, got {}", sizes.hidden),
        ));
    }
    Setting::ResHidden.require_positive(sizes.res_hidden as u64)
}

/// Checks that images of `shape` [C, H, W] fit a model with `channels` input channels whose
/// trunk shrinks each side by `scale`.
fn check_image_shape(shape: [usize; 3], channels: usize, scale: usize) -> Result<()> {
    let [c, h, w] = shape;
    if c == 0 || c != channels || h < scale || w < scale || h % scale != 0 || w % scale != 0 {
        return Err(Error::InvalidArgument(format!(
            "images of {c}x{h}x{w} do not fit a model with {channels} input channels (height and width must be multiples of {scale})"
        )));
    }
    Ok(())
}
