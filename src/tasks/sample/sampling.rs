//! The models samples come from, loaded and checked together, and their draws decoded into
//! images: what `sample` and `eval samples` share.

use std::path::Path;
use std::time::Instant;

use super::{Draw, Prior, Sampler};
use crate::autograd;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::models::vqvae::VqVae;
use crate::models::vqvae2::VqVae2;
use crate::tensor::Tensor;

/// The models samples come from: a VQ-VAE and a prior over its codes, or a VQ-VAE-2, a prior
/// over its top codes and one over its bottom codes given them.
pub enum Sampling {
    /// A VQ-VAE and its prior.
    OneLevel {
        /// The VQ-VAE.
        vqvae: VqVae,
        /// The prior over its codes.
        prior: Prior,
    },
    /// A VQ-VAE-2 and its two priors.
    TwoLevels {
        /// The VQ-VAE-2.
        vqvae: Box<VqVae2>,
        /// The prior over its top codes.
        top: Prior,
        /// The prior over its bottom codes, conditioned on the top codes.
        bottom: Prior,
    },
}

/// What [`Sampling::draw`] draws.
pub struct SamplingRequest<'a> {
    /// How the code grids are drawn.
    pub sampler: Sampler,
    /// Images to draw.
    pub count: usize,
    /// The class of each image, for a conditional (top) prior.
    pub labels: Option<&'a [u32]>,
    /// Softmax temperature (0: the most likely code at every step).
    pub temperature: f32,
    /// Seed of the sampling RNG.
    pub seed: u64,
    /// The index of the first image in the whole draw of `seed`: a draw made in parts, each
    /// part's `first` the number of images before it, equals the same draw made at once.
    pub first: usize,
}

/// The seed of a VQ-VAE-2's bottom codes drawn with `seed`: another RNG stream than the top
/// codes' (the same stream would give both grids the same noise at the same positions).
fn bottom_codes_seed(seed: u64) -> u64 {
    seed ^ 0x9E37_79B9_7F4A_7C15
}

/// Images drawn by [`Sampling::draw`].
pub struct Drawn {
    /// The images [count, C, H, W] (model units).
    pub images: Vec<f32>,
    /// The shape [C, H, W] of one image.
    pub shape: [usize; 3],
    /// What was drawn, for reports ("16x16 codes").
    pub codes: String,
    /// The code grids drawn [count, H, W] (a VQ-VAE-2's bottom grids).
    pub grids: Tensor,
    /// A VQ-VAE-2's top code grids.
    pub top_grids: Option<Tensor>,
}

impl Sampling {
    /// Loads the VQ-VAE (or VQ-VAE-2) checkpoint `vqvae` and its priors: `prior` (a VQ-VAE-2's
    /// top codes' prior) and, for a VQ-VAE-2 only, `bottom` (its bottom codes' prior). Refuses
    /// priors of other codes.
    pub fn load(gpu: &Gpu, vqvae: &Path, prior: &Path, bottom: Option<&Path>) -> Result<Self> {
        let ck = Checkpoint::load(vqvae)?;
        let prior = Prior::load(gpu, prior)?;
        if !VqVae2::is_format_of(&ck) {
            if bottom.is_some() {
                return Err(Error::InvalidArgument(format!(
                    "--bottom-prior is for a VQ-VAE-2's bottom codes, and {} is a one-level VQ-VAE",
                    vqvae.display()
                )));
            }
            return Ok(Self::OneLevel {
                vqvae: VqVae::from_checkpoint(gpu, &ck)?,
                prior,
            });
        }
        let Some(bottom) = bottom else {
            return Err(Error::InvalidArgument(format!(
                "{} is a VQ-VAE-2: give --prior (its top codes' prior) and --bottom-prior (its bottom codes' prior, trained with --condition-on-top)",
                vqvae.display()
            )));
        };
        let vqvae = Box::new(VqVae2::from_checkpoint(gpu, &ck)?);
        let (top, bottom) = (prior, Prior::load(gpu, bottom)?);
        let k = vqvae.config.codebook_size;
        if top.model.config.codes != k
            || bottom.model.config.codes != k
            || bottom.grid != top.grid.map(|side| 2 * side)
        {
            return Err(Error::InvalidArgument(format!(
                "the priors model {}x{} top grids of {} codes and {}x{} bottom grids of {} codes, which do not fit this VQ-VAE-2 (K = {k}; the bottom grid twice the top one): use the priors trained on its codes",
                top.grid[0], top.grid[1], top.model.config.codes,
                bottom.grid[0], bottom.grid[1], bottom.model.config.codes
            )));
        }
        Ok(Self::TwoLevels { vqvae, top, bottom })
    }

    /// The classes of the (top) prior: 0 for an unconditional one.
    pub fn classes(&self) -> usize {
        match self {
            Self::OneLevel { prior, .. } => prior.model.config.classes,
            Self::TwoLevels { top, .. } => top.model.config.classes,
        }
    }

    /// Draws the code grids of `request` and decodes them; with `progress`, a progress bar by
    /// rows (waiting for the GPU at the end of each row, so that it shows work done).
    pub fn draw(&self, request: &SamplingRequest, progress: bool) -> Result<Drawn> {
        let start = Instant::now();
        let draw = |prior: &Prior,
                    labels: Option<&[u32]>,
                    condition: Option<&Tensor>,
                    seed: u64,
                    what: &str| {
            let draw = Draw {
                sampler: request.sampler,
                count: request.count,
                labels,
                condition,
                temperature: request.temperature,
                seed,
                first: request.first,
            };
            prior.draw_all(&draw, progress.then_some(what))
        };
        match self {
            Self::OneLevel { vqvae, prior } => {
                let codes = draw(prior, request.labels, None, request.seed, "")?;
                let images = prior.decode(vqvae, &codes)?;
                let [h, w] = prior.grid.map(|side| side * vqvae.config.trunk().scale());
                Ok(Drawn {
                    images,
                    shape: [vqvae.config.in_channels, h, w],
                    codes: format!("{}x{} codes", prior.grid[0], prior.grid[1]),
                    grids: codes,
                    top_grids: None,
                })
            }
            Self::TwoLevels { vqvae, top, bottom } => {
                let top_codes = draw(top, request.labels, None, request.seed, " the top codes")?;
                let top_seconds = start.elapsed().as_secs_f64();
                let bottom_labels = request.labels.filter(|_| bottom.model.config.classes > 0);
                // the bottom codes on their own RNG stream: with the top codes' seed, the bottom
                // grid's first positions would draw the top grid's noise again
                let seed = bottom_codes_seed(request.seed);
                let codes = draw(
                    bottom,
                    bottom_labels,
                    Some(&top_codes),
                    seed,
                    " the bottom codes",
                )?;
                let images = {
                    let _no_grad = autograd::no_grad();
                    vqvae.decode_codes(&top_codes, &codes).to_vec()?
                };
                let [h, w] = bottom.grid.map(|side| side * 4);
                Ok(Drawn {
                    images,
                    shape: [vqvae.config.in_channels, h, w],
                    codes: format!(
                        "{}x{} top codes (drawn in {top_seconds:.2} s) and {}x{} bottom codes",
                        top.grid[0], top.grid[1], bottom.grid[0], bottom.grid[1]
                    ),
                    grids: codes,
                    top_grids: Some(top_codes),
                })
            }
        }
    }
}
