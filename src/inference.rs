//! Using a trained VQ-VAE: test-set evaluation, reconstructions, and encoding a dataset into code
//! grids for the prior.

use std::path::Path;

use crate::autograd;
use crate::checkpoint::Checkpoint;
use crate::data::{to_input, Dataset};
use crate::error::{Error, Result};
use crate::models::autoencoder::Autoencoder;
use crate::models::vqvae::VqVae;
use crate::tensor::Tensor;

/// Test-set quality of a VQ-VAE.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalReport {
    /// Images evaluated.
    pub images: usize,
    /// Mean squared error in [0, 1] pixel units (reconstructions clamped to the pixel range).
    pub mse: f64,
    /// Peak signal-to-noise ratio, 10 log10(1 / MSE), in dB.
    pub psnr: f64,
    /// Perplexity of the code usage over the whole set.
    pub perplexity: f64,
    /// Share of the codebook used at least once.
    pub codes_used: f64,
}

fn check_shape(model: &VqVae, data: &dyn Dataset) -> Result<[usize; 3]> {
    let shape = data.image_shape();
    if shape[0] != model.config.in_channels
        || !shape[1].is_multiple_of(4)
        || !shape[2].is_multiple_of(4)
    {
        return Err(Error::InvalidArgument(format!(
            "the dataset's {}x{}x{} images do not fit this model ({} channels, sides multiples of 4)",
            shape[0], shape[1], shape[2], model.config.in_channels
        )));
    }
    Ok(shape)
}

/// Images `range` of `data` as a [n, C, H, W] model input, on the GPU and on the host.
fn load_batch(
    data: &dyn Dataset,
    range: std::ops::Range<usize>,
    gpu: &crate::Gpu,
) -> Result<(Tensor, Vec<f32>)> {
    let [c, h, w] = data.image_shape();
    let per_image = c * h * w;
    let mut bytes = vec![0u8; per_image];
    let mut values = vec![0f32; range.len() * per_image];
    for (slot, index) in range.clone().enumerate() {
        data.image(index, &mut bytes);
        to_input(
            &bytes,
            &mut values[slot * per_image..(slot + 1) * per_image],
        );
    }
    Ok((
        Tensor::from_slice(gpu, &[range.len(), c, h, w], &values)?,
        values,
    ))
}

/// What `for_each_batch` calls: (inputs as host values, codes, reconstruction).
type BatchFn<'a> = dyn FnMut(&[f32], &Tensor, &Tensor) -> Result<()> + 'a;

/// Runs `f` on the inputs (host copy), codes and reconstruction of every batch of `data`, in order.
fn for_each_batch(
    model: &mut VqVae,
    data: &dyn Dataset,
    batch: usize,
    limit: usize,
    f: &mut BatchFn,
) -> Result<()> {
    check_shape(model, data)?;
    if batch == 0 {
        return Err(Error::InvalidArgument("--batch must be at least 1".into()));
    }
    let _no_grad = autograd::no_grad();
    let gpu = model.params.gpu().clone();
    let total = data.len().min(limit);
    for start in (0..total).step_by(batch) {
        let (x, host) = load_batch(data, start..(start + batch).min(total), &gpu)?;
        let out = model.forward(&x, false);
        f(&host, &out.quantized.codes, &out.recon)?;
    }
    Ok(())
}

/// Evaluates reconstruction and code usage over (at most `limit` images of) `data`.
pub fn evaluate(
    model: &mut VqVae,
    data: &dyn Dataset,
    batch: usize,
    limit: usize,
) -> Result<EvalReport> {
    let k = model.config.codebook_size;
    let mut histogram = vec![0u64; k];
    let (mut sq, mut values, mut images) = (0f64, 0usize, 0usize);
    for_each_batch(model, data, batch, limit, &mut |x, codes, recon| {
        let recon = recon.to_vec()?;
        for (a, b) in x.iter().zip(&recon) {
            let d = (b.clamp(-0.5, 0.5) - a) as f64;
            sq += d * d;
        }
        values += x.len();
        images += codes.dim(0);
        for c in codes.to_vec()? {
            histogram[c as usize] += 1;
        }
        Ok(())
    })?;
    let n: u64 = histogram.iter().sum();
    let entropy: f64 = histogram
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.ln()
        })
        .sum();
    let mse = sq / values.max(1) as f64;
    Ok(EvalReport {
        images,
        mse,
        psnr: 10.0 * (1.0 / mse.max(1e-12)).log10(),
        perplexity: entropy.exp(),
        codes_used: histogram.iter().filter(|&&c| c > 0).count() as f64 / k as f64,
    })
}

/// The first `count` images of `data` and their reconstructions, model units.
pub fn reconstruct(
    model: &mut VqVae,
    data: &dyn Dataset,
    count: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (mut originals, mut recons) = (Vec::new(), Vec::new());
    for_each_batch(model, data, count.max(1), count, &mut |x, _, recon| {
        originals.extend_from_slice(x);
        recons.extend(recon.to_vec()?);
        Ok(())
    })?;
    Ok((originals, recons))
}

/// Adds the code grids of the first `limit` images of `data` to `out` as `{split}.codes`
/// [N, H/4, W/4] (i32) and, where the dataset has labels, `{split}.labels` [N] (i32) with the
/// number of classes as metadata `classes`.
pub fn encode_into(
    out: &mut Checkpoint,
    split: &str,
    model: &mut VqVae,
    data: &dyn Dataset,
    batch: usize,
    limit: usize,
) -> Result<()> {
    let mut codes_all: Vec<i32> = Vec::with_capacity(data.len() * 64);
    let mut grid = [0usize; 2];
    for_each_batch(model, data, batch, limit, &mut |_, codes, _| {
        grid = [codes.dim(1), codes.dim(2)];
        codes_all.extend(codes.to_vec()?.iter().map(|&c| c as i32));
        Ok(())
    })?;
    let n = data.len().min(limit);
    out.insert_i32(&format!("{split}.codes"), &[n, grid[0], grid[1]], codes_all);
    if let Some(classes) = data.classes() {
        let labels = (0..n).map(|i| data.label(i).unwrap_or(0) as i32).collect();
        out.insert_i32(&format!("{split}.labels"), &[n], labels);
        out.set("classes", classes);
    }
    Ok(())
}

/// Loads the VQ-VAE of a checkpoint file.
pub fn load_vqvae(gpu: &crate::Gpu, path: &Path) -> Result<VqVae> {
    VqVae::from_checkpoint(gpu, &Checkpoint::load(path)?)
}

/// Test-set quality of an AE, denoising AE or VAE.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AeReport {
    /// Images evaluated.
    pub images: usize,
    /// Reconstruction MSE in [0, 1] pixel units (reconstructions clamped to the pixel range).
    pub mse: f64,
    /// 10 log10(1 / MSE), in dB.
    pub psnr: f64,
    /// VAE: reconstruction NLL and KL per image, nats (one posterior sample per image).
    pub nll_kl: Option<(f64, f64)>,
}

/// Evaluates `model` on (at most `limit` images of) `data`: clean inputs, one seeded noise draw
/// for a VAE's posterior sample; `variance` is the training data's pixel variance.
pub fn evaluate_autoencoder(
    model: &Autoencoder,
    data: &dyn Dataset,
    batch: usize,
    limit: usize,
    variance: f32,
) -> Result<AeReport> {
    if data.image_shape() != model.config.image_shape {
        return Err(Error::InvalidArgument(format!(
            "the dataset's images are {:?} but the model was trained on {:?}",
            data.image_shape(),
            model.config.image_shape
        )));
    }
    if batch == 0 {
        return Err(Error::InvalidArgument("--batch must be at least 1".into()));
    }
    let _no_grad = autograd::no_grad();
    let gpu = model.params.gpu().clone();
    let total = data.len().min(limit);
    let (mut sq, mut values, mut nll, mut kl) = (0f64, 0usize, 0f64, 0f64);
    for start in (0..total).step_by(batch) {
        let range = start..(start + batch).min(total);
        let n = range.len() as f64;
        let (x, host) = load_batch(data, range, &gpu)?;
        let out = model.forward(&x, start as u64, variance, false);
        for (a, b) in host.iter().zip(out.recon.to_vec()?) {
            let d = (b.clamp(-0.5, 0.5) - a) as f64;
            sq += d * d;
        }
        values += host.len();
        if let (Some(r), Some(k)) = (&out.recon_nll, &out.kl) {
            nll += r.item()? as f64 * n;
            kl += k.item()? as f64 * n;
        }
    }
    let mse = sq / values.max(1) as f64;
    let per = total.max(1) as f64;
    Ok(AeReport {
        images: total,
        mse,
        psnr: 10.0 * (1.0 / mse.max(1e-12)).log10(),
        nll_kl: model.config.variational().then_some((nll / per, kl / per)),
    })
}

/// The VAE's posterior means of (at most `limit` images of) `data`, one `latent` vector each,
/// with the images' labels (0 where the dataset has none).
pub fn posterior_means(
    model: &Autoencoder,
    data: &dyn Dataset,
    batch: usize,
    limit: usize,
) -> Result<(Vec<Vec<f32>>, Vec<u32>)> {
    let _no_grad = autograd::no_grad();
    let gpu = model.params.gpu().clone();
    let total = data.len().min(limit);
    let (mut means, mut labels) = (Vec::with_capacity(total), Vec::with_capacity(total));
    for start in (0..total).step_by(batch.max(1)) {
        let range = start..(start + batch.max(1)).min(total);
        let (x, _) = load_batch(data, range.clone(), &gpu)?;
        let stats = model.encode(&x).to_vec()?;
        let per_item = stats.len() / range.len();
        for (item, index) in range.enumerate() {
            // the means are the first half of each item's statistics
            means.push(stats[item * per_item..item * per_item + per_item / 2].to_vec());
            labels.push(data.label(index).unwrap_or(0));
        }
    }
    Ok((means, labels))
}
