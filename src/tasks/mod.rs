//! The work of every command as a library function: each module takes the GPU and its options,
//! prints what the command prints (progress on stderr, results on stdout) and returns a report
//! that tests and other tasks can use. `pipeline` chains `train`, `encode` and `sample`.

pub mod bench;
pub mod encode;
pub mod eval;
pub mod info;
pub mod latent_map;
pub mod pipeline;
pub mod progress;
pub mod reconstruct;
pub mod sample;
pub mod score;
pub mod train;

use std::ops::Range;

use crate::autograd;
use crate::data::{Batch, Dataset};
use crate::error::{Result, Setting};
use crate::gpu::Gpu;
use crate::models::CodeModel;
use crate::tensor::Tensor;

use progress::Progress;

/// Images `range` of `data` as a [n, C, H, W] model input, on the GPU and on the host.
fn load_images(data: &dyn Dataset, range: Range<usize>, gpu: &Gpu) -> Result<(Tensor, Vec<f32>)> {
    let [c, h, w] = data.image_shape();
    let indices: Vec<usize> = range.collect();
    let values = Batch::gather(data, &indices, 0).image_inputs();
    Ok((
        Tensor::from_slice(gpu, &[indices.len(), c, h, w], &values)?,
        values,
    ))
}

/// What [`for_each_batch`] calls per batch: the inputs (host copy), the reconstruction and the
/// code grids (one per level, top first).
type BatchVisitor<'a> = dyn FnMut(&[f32], &Tensor, &[Tensor]) -> Result<()> + 'a;

/// Runs `f` on the inputs (host copy), the model's reconstruction and its code grids (one per
/// level, top first) for every batch of the first `limit` images of `data`, in order, without
/// training, with a progress bar over the images.
fn for_each_batch(
    model: &mut dyn CodeModel,
    data: &dyn Dataset,
    batch: usize,
    limit: usize,
    f: &mut BatchVisitor<'_>,
) -> Result<()> {
    model.check_images(data.image_shape())?;
    Setting::Batch.require_positive(batch as u64)?;
    let _no_grad = autograd::no_grad();
    let gpu = model.gpu().clone();
    let total = data.len().min(limit);
    let progress = Progress::new(0, total as u64);
    for start in (0..total).step_by(batch) {
        let end = (start + batch).min(total);
        let (x, host) = load_images(data, start..end, &gpu)?;
        let (recon, codes) = model.reconstruct(&x);
        f(&host, &recon, &codes)?;
        progress.advance(end as u64);
    }
    Ok(())
}

/// Adds the squared errors between inputs and reconstructions clamped to the pixel range to `sum`.
fn add_squared_error(sum: &mut f64, inputs: &[f32], recons: &[f32]) {
    for (a, b) in inputs.iter().zip(recons) {
        let d = (b.clamp(-0.5, 0.5) - a) as f64;
        *sum += d * d;
    }
}

/// 10 log10(1 / MSE), in dB (MSE of pixels in [0, 1]).
fn psnr(mse: f64) -> f64 {
    10.0 * (1.0 / mse.max(1e-12)).log10()
}
