//! Drawing new images: ancestral sampling of a code grid from the PixelCNN prior, one position
//! at a time in raster order for the whole batch on the GPU, then the VQ-VAE decoder.

use std::path::Path;

use crate::autograd;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::models::pixelcnn::PixelCnn;
use crate::models::vqvae::VqVae;
use crate::ops::{latent, softmax};
use crate::tensor::Tensor;
use crate::train::label_grid;

/// A trained prior and the (height, width) of the grids it was trained on.
pub struct Prior {
    /// The model.
    pub model: PixelCnn,
    /// Grid (height, width).
    pub grid: [usize; 2],
}

impl Prior {
    /// Loads the prior of a `train prior` checkpoint.
    pub fn load(gpu: &crate::Gpu, path: &Path) -> Result<Self> {
        let ck = Checkpoint::load(path)?;
        Ok(Self {
            model: PixelCnn::from_checkpoint(gpu, &ck)?,
            grid: ck.dims("grid")?,
        })
    }

    /// Draws `labels.len()` code grids (or `count` without labels) [count, H, W] from the prior at
    /// `temperature` (<= 0: the most likely code at each step), with the RNG keyed by `seed`.
    /// One forward pass per position; nothing is read back.
    pub fn sample_codes(
        &self,
        count: usize,
        labels: Option<&[u32]>,
        temperature: f32,
        seed: u64,
    ) -> Result<Tensor> {
        let classes = self.model.config.classes;
        match labels {
            Some(_) if classes == 0 => {
                return Err(Error::InvalidArgument(
                    "--class needs a prior trained with --conditional".into(),
                ));
            }
            Some(l) if l.len() != count => {
                return Err(Error::InvalidArgument(format!(
                    "{} classes given for {count} samples",
                    l.len()
                )));
            }
            Some(l) if l.iter().any(|&c| c as usize >= classes) => {
                return Err(Error::InvalidArgument(format!(
                    "--class must be below {classes}, the prior's number of classes"
                )));
            }
            None if classes > 0 => {
                return Err(Error::InvalidArgument(
                    "this prior is conditional: give a class for every sample".into(),
                ))
            }
            _ => {}
        }
        if count == 0 {
            return Err(Error::InvalidArgument("--count must be at least 1".into()));
        }
        let _no_grad = autograd::no_grad();
        let gpu = self.model.params.gpu();
        let [h, w] = self.grid;
        let codes = Tensor::zeros(gpu, &[count, h, w]);
        let labels = labels
            .map(|l| Tensor::from_slice(gpu, &[count, h, w], &label_grid(l, h * w)))
            .transpose()?;
        let key = latent::rng_key(seed);
        for position in 0..h * w {
            let logits = self.model.forward(&codes, labels.as_ref());
            softmax::sample_position(&logits, &codes, position, key, temperature);
        }
        Ok(codes)
    }
}

/// Decodes sampled code grids with the VQ-VAE into images [count, C, H, W] (model units).
pub fn decode(vqvae: &VqVae, prior: &Prior, codes: &Tensor) -> Result<Vec<f32>> {
    if vqvae.config.codebook_size != prior.model.config.codes {
        return Err(Error::InvalidArgument(format!(
            "the prior models {} codes but the VQ-VAE has {}: use the VQ-VAE whose codes trained the prior",
            prior.model.config.codes, vqvae.config.codebook_size
        )));
    }
    let _no_grad = autograd::no_grad();
    vqvae.decode_codes(codes).to_vec()
}
