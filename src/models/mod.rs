//! Models composed from `nn` layers: the conv trunk, the VQ-VAE and the two-level VQ-VAE-2, the
//! VQ-VAE's relatives (AE, denoising AE, VAE), the Gated PixelCNN prior and the image classifier
//! that scores samples.

pub mod autoencoder;
pub mod classifier;
pub mod pixelcnn;
pub mod trunk;
pub mod vqvae;
pub mod vqvae2;

use std::path::Path;

use crate::error::{Error, Result, Setting};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::tensor::Tensor;
use trunk::TrunkSizes;
use vqvae::VqVae;
use vqvae2::VqVae2;

/// A model with discrete codes, the VQ-VAE or VQ-VAE-2, as the commands that evaluate,
/// reconstruct and encode images see it.
pub trait CodeModel {
    /// The device the model lives on.
    fn gpu(&self) -> &Gpu;
    /// Checks that images of `shape` [C, H, W] fit the model.
    fn check_images(&self, shape: [usize; 3]) -> Result<()>;
    /// The codebook size of each level, top first.
    fn codebook_sizes(&self) -> Vec<usize>;
    /// The reconstruction of x [B, C, H, W] and the code grids of each level (top first), without
    /// training.
    fn reconstruct(&mut self, x: &Tensor) -> (Tensor, Vec<Tensor>);
}

impl CodeModel for VqVae {
    fn gpu(&self) -> &Gpu {
        self.params.gpu()
    }

    fn check_images(&self, shape: [usize; 3]) -> Result<()> {
        self.config.check_images(shape)
    }

    fn codebook_sizes(&self) -> Vec<usize> {
        vec![self.config.codebook_size]
    }

    fn reconstruct(&mut self, x: &Tensor) -> (Tensor, Vec<Tensor>) {
        let out = self.forward(x, false);
        (out.recon, vec![out.quantized.codes])
    }
}

impl CodeModel for VqVae2 {
    fn gpu(&self) -> &Gpu {
        self.params.gpu()
    }

    fn check_images(&self, shape: [usize; 3]) -> Result<()> {
        vqvae2::check_images(&self.config, shape)
    }

    fn codebook_sizes(&self) -> Vec<usize> {
        vec![self.config.codebook_size; 2]
    }

    fn reconstruct(&mut self, x: &Tensor) -> (Tensor, Vec<Tensor>) {
        let out = self.forward(x, false);
        (out.recon, vec![out.top.codes, out.bottom.codes])
    }
}

/// The VQ-VAE or VQ-VAE-2 saved in a checkpoint file, told by its format. Images of another
/// shape than the model was trained on (where the checkpoint records it) are refused: a
/// convolutional model runs on them, but its scores would mean little.
pub fn load_code_model(gpu: &Gpu, path: &Path, images: [usize; 3]) -> Result<Box<dyn CodeModel>> {
    let ck = Checkpoint::load(path)?;
    let model: Box<dyn CodeModel> = if VqVae2::is_format_of(&ck) {
        Box::new(VqVae2::from_checkpoint(gpu, &ck)?)
    } else {
        Box::new(VqVae::from_checkpoint(gpu, &ck)?)
    };
    if let Ok(trained) = ck.dims::<3>("image_shape") {
        if trained != images {
            let [c, h, w] = trained;
            let [ic, ih, iw] = images;
            return Err(Error::InvalidArgument(format!(
                "{} was trained on {c}x{h}x{w} images, these are {ic}x{ih}x{iw} (choose the data with --dataset / --image-size)",
                path.display()
            )));
        }
    }
    Ok(model)
}

/// The `train` command whose runs save checkpoints like `ck` (`vqvae`, `vqvae2`, `prior`,
/// `classifier`, or an autoencoder's kind: `ae`, `dae`, `vae`), told by its format; `None` for a
/// file that records no model vqgpu knows.
pub fn trained_by(ck: &Checkpoint) -> Option<&'static str> {
    let format = ck.meta("format").ok()?;
    match format {
        vqvae::FORMAT => Some("vqvae"),
        vqvae2::FORMAT => Some("vqvae2"),
        pixelcnn::FORMAT => Some("prior"),
        classifier::FORMAT => Some("classifier"),
        autoencoder::FORMAT => match ck.meta("kind").ok()? {
            "ae" => Some("ae"),
            "dae" => Some("dae"),
            "vae" => Some("vae"),
            _ => None,
        },
        _ => None,
    }
}

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
