//! `reconstruct`: a PNG grid of test images above their VQ-VAE or VQ-VAE-2 reconstructions.

use std::path::PathBuf;

use crate::data::{DataSpec, Dataset, Split};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::io::atomic;
use crate::io::grid::{check_png_path, save_comparison};
use crate::models::{load_code_model, CodeModel};

use super::for_each_batch;
use super::sample::check_count;

/// What to reconstruct and where the grid goes.
#[derive(Clone, Debug)]
pub struct ReconstructOptions {
    /// The VQ-VAE or VQ-VAE-2 checkpoint.
    pub checkpoint: PathBuf,
    /// The dataset whose test split is shown.
    pub data: DataSpec,
    /// Images to show.
    pub count: usize,
    /// The PNG written.
    pub out: PathBuf,
}

/// The first `count` images of `data` and their reconstructions, model units.
pub fn reconstruct(
    model: &mut dyn CodeModel,
    data: &dyn Dataset,
    count: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (mut originals, mut recons) = (Vec::new(), Vec::new());
    for_each_batch(
        model,
        data,
        count.clamp(1, BATCH),
        count,
        &mut |x, recon, _| {
            originals.extend_from_slice(x);
            recons.extend(recon.to_vec()?);
            Ok(())
        },
    )?;
    Ok((originals, recons))
}

/// Images per forward pass.
const BATCH: usize = 64;

/// Writes the grid (up to 16 images per row); returns its path.
pub fn run(gpu: &Gpu, options: &ReconstructOptions) -> Result<PathBuf> {
    atomic::refuse_own_input(&options.out, &[&options.checkpoint])?;
    check_png_path(&options.out)?;
    check_count(options.count)?;
    let test = options.data.open(Split::Test)?;
    let mut model = load_code_model(gpu, &options.checkpoint, test.image_shape())?;
    let (originals, recons) = reconstruct(model.as_mut(), test.as_ref(), options.count)?;
    let shape = test.image_shape();
    let columns = (originals.len() / shape.iter().product::<usize>()).min(16);
    save_comparison(&options.out, &originals, &recons, shape, columns)?;
    println!("wrote {}", options.out.display());
    Ok(options.out.clone())
}
