//! `sample`: new images. Code grids are drawn from a PixelCNN prior one position at a time in
//! raster order, for the whole batch on the GPU (by default with each layer's activations cached, so
//! that a grid costs time linear in its positions), then decoded by the VQ-VAE (a VQ-VAE-2's top
//! grids first, then its bottom grids given them); or a VAE decodes draws of z ~ N(0, I).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::autograd;
use crate::error::{Error, Result, Setting};
use crate::gpu::Gpu;
use crate::io::atomic;
use crate::io::checkpoint::Checkpoint;
use crate::io::grid::{self, save_grid};
use crate::models::autoencoder::Autoencoder;
use crate::models::pixelcnn::PixelCnn;
use crate::models::vqvae::VqVae;
use crate::ops::{latent, softmax};
use crate::tensor::Tensor;

use super::progress::Progress;

mod sampling;
pub use sampling::{Drawn, Sampling, SamplingRequest};

/// How code grids are drawn from a prior.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sampler {
    /// One forward pass of the whole grid per position: quadratic in the positions. The reference.
    Full,
    /// Each layer's activations at the positions already drawn are kept and only what the next
    /// position needs is computed: linear in the positions. Its sums run in the full pass's order,
    /// so it draws the same codes, bit for bit on one adapter.
    #[default]
    Cached,
}

impl Sampler {
    /// The name `--sampler` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Cached => "cached",
        }
    }
}

/// What [`Prior::draw_first`] draws: the arguments of [`Prior::sample_codes`].
pub(crate) struct Draw<'a> {
    pub(crate) sampler: Sampler,
    pub(crate) count: usize,
    pub(crate) labels: Option<&'a [u32]>,
    /// The condition grids [count, H/2, W/2] of a prior conditioned on top codes.
    pub(crate) condition: Option<&'a Tensor>,
    pub(crate) temperature: f32,
    pub(crate) seed: u64,
    /// The index of the first grid in the whole draw (see [`SamplingRequest::first`]).
    pub(crate) first: usize,
}

/// A trained prior and the (height, width) of the grids it was trained on.
pub struct Prior {
    /// The model.
    pub model: PixelCnn,
    /// Grid (height, width).
    pub grid: [usize; 2],
}

impl Prior {
    /// Loads the prior of a `train prior` checkpoint.
    pub fn load(gpu: &Gpu, path: &Path) -> Result<Self> {
        let ck = Checkpoint::load(path)?;
        let model = PixelCnn::from_checkpoint(gpu, &ck)?;
        let grid = ck.dims("grid")?;
        model
            .config
            .check_grid(grid)
            .map_err(|e| ck.error(e.to_string()))?;
        Ok(Self { model, grid })
    }

    /// Draws `labels.len()` code grids (or `count` without labels) [count, H, W] from the prior at
    /// `temperature` (<= 0: the most likely code at each step), with the RNG keyed by `seed`, by
    /// `sampler`: grids `first ..` of the draw of `seed` (a draw made in parts equals the same
    /// draw made at once). Every position is drawn on the GPU; nothing is read back.
    pub fn sample_codes(
        &self,
        sampler: Sampler,
        count: usize,
        labels: Option<&[u32]>,
        temperature: f32,
        seed: u64,
        first: usize,
    ) -> Result<Tensor> {
        let draw = Draw {
            sampler,
            count,
            labels,
            condition: None,
            temperature,
            seed,
            first,
        };
        self.draw_all(&draw, None)
    }

    /// Every position of the grids `draw` asks for, after checking the request; with `progress`
    /// (what is drawn, for its line), a progress bar by rows that waits for the GPU at the end of
    /// each row, so that it shows work done, not work recorded.
    fn draw_all(&self, draw: &Draw, progress: Option<&str>) -> Result<Tensor> {
        self.check_request(draw.count, draw.labels, draw.condition)?;
        let [h, w] = self.grid;
        let gpu = self.model.params.gpu();
        let bar = progress.map(|what| (Progress::new(0, h as u64), what));
        self.draw_first(draw, h * w, &mut |rows| {
            if let Some((bar, what)) = &bar {
                gpu.sync()?;
                bar.show(rows as u64, format!("sampling{what}: row {rows} of {h}"));
            }
            Ok(())
        })
    }

    /// Refuses a count of 0, labels a prior cannot take or that do not match the count, and a
    /// condition grid a prior cannot take, needs, or that does not match the count and grid.
    fn check_request(
        &self,
        count: usize,
        labels: Option<&[u32]>,
        condition: Option<&Tensor>,
    ) -> Result<()> {
        let half = [count, self.grid[0] / 2, self.grid[1] / 2];
        match (self.model.config.condition_codes, condition) {
            (0, None) => {}
            (0, Some(_)) => {
                return Err(Error::InvalidArgument(
                    "this prior is not conditioned on top codes".into(),
                ))
            }
            (_, Some(c)) if c.shape() == half => {}
            (_, _) => {
                return Err(Error::InvalidArgument(format!(
                    "this prior is conditioned on top codes: it needs {count} top grids of {}x{}",
                    half[1], half[2]
                )))
            }
        }
        let classes = self.model.config.classes;
        match labels {
            Some(_) if classes == 0 => {
                return Err(Error::setting(
                    Setting::Class,
                    "needs a conditional prior, and this prior is unconditional",
                ));
            }
            Some(l) if l.len() != count => {
                return Err(Error::InvalidArgument(format!(
                    "{} classes given for {count} samples",
                    l.len()
                )));
            }
            Some(l) if l.iter().any(|&c| c as usize >= classes) => {
                return Err(Error::setting(
                    Setting::Class,
                    format!("must be below {classes}, the prior's number of classes"),
                ));
            }
            None if classes > 0 => {
                return Err(Error::InvalidArgument(
                    "this prior is conditional: give a class for every sample".into(),
                ))
            }
            _ => {}
        }
        Setting::Count.require_positive(count as u64)
    }

    /// [`Prior::sample_codes`] of only the first `positions` positions in raster order (the rest
    /// of the grids stay 0), with the request already checked, calling `after_row` with the number
    /// of rows done each time a row is complete (recorded, not waited for). For timing the full
    /// sampler on part of a grid (each of its positions costs one identical forward pass), and for
    /// showing progress.
    pub(crate) fn draw_first(
        &self,
        draw: &Draw,
        positions: usize,
        after_row: &mut dyn FnMut(usize) -> Result<()>,
    ) -> Result<Tensor> {
        let &Draw {
            sampler,
            count,
            labels,
            condition,
            temperature,
            seed,
            first,
        } = draw;
        let _no_grad = autograd::no_grad();
        let gpu = self.model.params.gpu();
        let [h, w] = self.grid;
        let codes = Tensor::zeros(gpu, &[count, h, w]);
        let key = latent::rng_key(seed);
        match sampler {
            Sampler::Full => {
                let labels = labels
                    .map(|l| {
                        Tensor::from_slice(gpu, &[count, h, w], &PixelCnn::label_grid(l, h * w))
                    })
                    .transpose()?;
                for position in 0..positions {
                    let logits = self
                        .model
                        .forward_conditioned(&codes, labels.as_ref(), condition);
                    softmax::sample_position(&logits, &codes, position, key, first, temperature);
                    if (position + 1) % w == 0 {
                        after_row((position + 1) / w)?;
                    }
                }
            }
            Sampler::Cached => {
                let mut prior = self
                    .model
                    .incremental(count, self.grid, labels, condition)?;
                for position in 0..positions {
                    let logits = prior.next_logits();
                    softmax::sample_position(&logits, &codes, position, key, first, temperature);
                    prior.commit(&codes);
                    if (position + 1) % w == 0 {
                        after_row((position + 1) / w)?;
                    }
                }
            }
        }
        Ok(codes)
    }

    /// Decodes sampled code grids with the VQ-VAE whose codes trained the prior into images
    /// [count, C, H, W] (model units).
    pub fn decode(&self, vqvae: &VqVae, codes: &Tensor) -> Result<Vec<f32>> {
        if vqvae.config.codebook_size != self.model.config.codes {
            return Err(Error::InvalidArgument(format!(
                "the prior models {} codes but the VQ-VAE has {}: use the VQ-VAE whose codes trained the prior",
                self.model.config.codes, vqvae.config.codebook_size
            )));
        }
        let _no_grad = autograd::no_grad();
        vqvae.decode_codes(codes).to_vec()
    }
}

/// How many samples from which models, and where the grid goes.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    /// The VQ-VAE whose codes trained the prior.
    pub vqvae: PathBuf,
    /// The prior checkpoint (of a VQ-VAE-2's top codes).
    pub prior: PathBuf,
    /// A VQ-VAE-2's bottom codes' prior, conditioned on the top codes.
    pub bottom_prior: Option<PathBuf>,
    /// Images to draw (a conditional prior without a class: rounded up to whole rows, one per class).
    pub count: usize,
    /// Softmax temperature (0: the most likely code at every step).
    pub temperature: f32,
    /// The class of every sample (conditional priors; `None`: one row per class).
    pub class: Option<u32>,
    /// Seed of the sampling RNG.
    pub seed: u64,
    /// How the code grids are drawn.
    pub sampler: Sampler,
    /// The PNG written.
    pub out: PathBuf,
}

/// The most images one `sample` (or `eval samples`) draws (`sample` decodes them in one batch and
/// draws them in one PNG).
pub(crate) const MAX_SAMPLES: usize = 4096;

/// Refuses a sample count of 0 or above [`MAX_SAMPLES`].
pub(crate) fn check_count(count: usize) -> Result<()> {
    if !(1..=MAX_SAMPLES).contains(&count) {
        return Err(Error::setting(
            Setting::Count,
            format!("must be 1 to {MAX_SAMPLES}, got {count}"),
        ));
    }
    Ok(())
}

/// Refuses a temperature that is negative or not a number.
pub(crate) fn check_temperature(t: f32) -> Result<()> {
    if !(t >= 0.0 && t.is_finite()) {
        return Err(Error::setting(
            Setting::Temperature,
            format!("must be a number >= 0, got {t}"),
        ));
    }
    Ok(())
}

/// (labels, images per row) of a sample grid: every sample of `class` if given, else for a
/// conditional prior of `classes` one row per class with `count` rounded up to whole rows.
fn class_rows(count: usize, classes: usize, class: Option<u32>) -> (Option<Vec<u32>>, usize) {
    match (classes, class) {
        (_, Some(class)) => (Some(vec![class; count]), 8.min(count)),
        (0, None) => (None, 8.min(count)),
        (c, None) => {
            let per_class = count.div_ceil(c).max(1);
            let labels = (0..c * per_class).map(|i| (i / per_class) as u32).collect();
            (Some(labels), per_class)
        }
    }
}

/// Draws the samples, decodes them and writes the grid; returns the decoded images. A one-level
/// VQ-VAE decodes the grids of `prior`; a VQ-VAE-2 the top grids of `prior` and the bottom grids
/// of `bottom_prior` drawn given them.
pub fn run(gpu: &Gpu, options: &SampleOptions) -> Result<Vec<f32>> {
    let mut inputs = vec![options.vqvae.as_path(), options.prior.as_path()];
    inputs.extend(options.bottom_prior.as_deref());
    atomic::refuse_own_input(&options.out, &inputs)?;
    grid::check_png_path(&options.out)?;
    check_count(options.count)?;
    let t = options.temperature;
    check_temperature(t)?;
    let sampling = Sampling::load(
        gpu,
        &options.vqvae,
        &options.prior,
        options.bottom_prior.as_deref(),
    )?;
    let (labels, columns) = class_rows(options.count, sampling.classes(), options.class);
    let count = labels.as_ref().map_or(options.count, Vec::len);
    let start = Instant::now();
    let drawn = sampling.draw(
        &SamplingRequest {
            sampler: options.sampler,
            count,
            labels: labels.as_deref(),
            temperature: t,
            seed: options.seed,
            first: 0,
        },
        true,
    )?;
    let seconds = start.elapsed().as_secs_f64();
    save_grid(&options.out, &drawn.images, drawn.shape, columns)?;
    println!(
        "adapter: {}; {count} samples of {} in {seconds:.2} s ({:.1} samples/s, {} sampler); wrote {}",
        gpu.adapter_name(),
        drawn.codes,
        count as f64 / seconds,
        options.sampler.name(),
        options.out.display()
    );
    Ok(drawn.images)
}

/// `sample --vae`: how many draws from which VAE, and where the grid goes.
#[derive(Clone, Debug)]
pub struct VaeSampleOptions {
    /// The VAE checkpoint.
    pub vae: PathBuf,
    /// Images to draw.
    pub count: usize,
    /// Seed of the GPU RNG.
    pub seed: u64,
    /// The PNG written.
    pub out: PathBuf,
}

/// Decodes `count` draws of z ~ N(0, I) (keyed by the seed) into a PNG grid; returns the images.
pub fn vae(gpu: &Gpu, options: &VaeSampleOptions) -> Result<Vec<f32>> {
    let path = &options.vae;
    atomic::refuse_own_input(&options.out, &[path])?;
    grid::check_png_path(&options.out)?;
    check_count(options.count)?;
    let model = Autoencoder::from_checkpoint(gpu, &Checkpoint::load(path)?)?;
    if !model.config.variational() {
        return Err(Error::InvalidArgument(format!(
            "{} holds a {}, not a VAE: only a VAE has a prior to sample from",
            path.display(),
            model.config.kind_name()
        )));
    }
    Setting::Count.require_positive(options.count as u64)?;
    let _no_grad = autograd::no_grad();
    let shape = model.latent_shape(options.count);
    let z = latent::normal(gpu, &shape, options.seed, 0.0, 1.0);
    let images = model.decode(&z).to_vec()?;
    save_grid(&options.out, &images, model.config.image_shape, 8)?;
    println!(
        "adapter: {}; {} samples from N(0, I); wrote {}",
        gpu.adapter_name(),
        options.count,
        options.out.display()
    );
    Ok(images)
}
