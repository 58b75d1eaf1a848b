//! `eval vqvae` (VQ-VAE and VQ-VAE-2), `eval ae` and `eval prior`: test-set quality of a trained
//! model.

use std::path::PathBuf;

use crate::autograd;
use crate::data::{CodeGrids, CodeLevel, DataSpec, Dataset, Split};
use crate::error::{Error, Result, Setting};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::models::autoencoder::Autoencoder;
use crate::models::pixelcnn::PixelCnn;
use crate::models::{load_code_model, CodeModel};
use crate::train::{bits, PriorTask, DATASET_KEY};

use super::progress::Progress;
use super::train::prior_dataset;
use super::{add_squared_error, for_each_batch, load_images, psnr};

/// A trained model and the test images to evaluate it on.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// The checkpoint of a training run.
    pub checkpoint: PathBuf,
    /// The dataset whose test split is used.
    pub data: DataSpec,
    /// Images per forward pass.
    pub batch: usize,
    /// Evaluate at most this many test images.
    pub limit: usize,
}

/// How one level's codes were used over a test set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CodeUsage {
    /// Perplexity of the code usage over the whole set.
    pub perplexity: f64,
    /// Share of the codebook used at least once.
    pub codes_used: f64,
}

/// Test-set quality of a VQ-VAE or VQ-VAE-2.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalReport {
    /// Images evaluated.
    pub images: usize,
    /// Mean squared error in [0, 1] pixel units (reconstructions clamped to the pixel range).
    pub mse: f64,
    /// Peak signal-to-noise ratio, 10 log10(1 / MSE), in dB.
    pub psnr: f64,
    /// The code usage of each level, top first.
    pub levels: Vec<CodeUsage>,
}

/// The error of a model whose outputs are not finite numbers.
fn not_finite() -> Error {
    Error::InvalidArgument(
        "the model's outputs are not finite numbers (it diverged): there is no score to report"
            .into(),
    )
}

/// The mean squared error `sq / values`; an error when there was nothing to average (no test
/// images: --limit 0 or an empty split) or when it is not a finite number.
fn checked_mean(sq: f64, values: usize) -> Result<f64> {
    if values == 0 {
        return Err(Error::InvalidArgument(
            "no test images were evaluated: --limit must be at least 1 and the test split not empty"
                .into(),
        ));
    }
    let mse = sq / values as f64;
    if !mse.is_finite() {
        return Err(not_finite());
    }
    Ok(mse)
}

/// The usage of a codebook of `histogram.len()` codes used `histogram[k]` times each.
fn usage(histogram: &[u64]) -> CodeUsage {
    let n: u64 = histogram.iter().sum();
    let entropy: f64 = histogram
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.ln()
        })
        .sum();
    CodeUsage {
        perplexity: entropy.exp(),
        codes_used: histogram.iter().filter(|&&c| c > 0).count() as f64 / histogram.len() as f64,
    }
}

/// Evaluates reconstruction and each level's code usage over (at most `limit` images of) `data`.
pub fn evaluate(
    model: &mut dyn CodeModel,
    data: &dyn Dataset,
    batch: usize,
    limit: usize,
) -> Result<EvalReport> {
    let mut histograms: Vec<Vec<u64>> = model
        .codebook_sizes()
        .iter()
        .map(|&k| vec![0u64; k])
        .collect();
    let (mut sq, mut values, mut images) = (0f64, 0usize, 0usize);
    for_each_batch(model, data, batch, limit, &mut |x, recon, levels| {
        add_squared_error(&mut sq, x, &recon.to_vec()?);
        values += x.len();
        images += recon.dim(0);
        for (histogram, codes) in histograms.iter_mut().zip(levels) {
            for c in codes.to_vec()? {
                histogram[c as usize] += 1;
            }
        }
        Ok(())
    })?;
    let mse = checked_mean(sq, values)?;
    Ok(EvalReport {
        images,
        mse,
        psnr: psnr(mse),
        levels: histograms.iter().map(|h| usage(h)).collect(),
    })
}

/// `eval vqvae` (a VQ-VAE or VQ-VAE-2 checkpoint): evaluates it on the test split and prints the
/// report.
pub fn vqvae(gpu: &Gpu, options: &EvalOptions) -> Result<EvalReport> {
    let test = options.data.open(Split::Test)?;
    let mut model = load_code_model(gpu, &options.checkpoint, test.image_shape())?;
    let report = evaluate(model.as_mut(), test.as_ref(), options.batch, options.limit)?;
    println!("adapter: {}", gpu.adapter_name());
    let usage = |u: &CodeUsage| {
        format!(
            "perplexity {:.1}, codebook used {:.1}%",
            u.perplexity,
            u.codes_used * 100.0
        )
    };
    let codes = match report.levels.as_slice() {
        [one] => usage(one),
        levels => ["top", "bottom"]
            .iter()
            .zip(levels)
            .map(|(name, u)| format!("{name} codes: {}", usage(u)))
            .collect::<Vec<_>>()
            .join("; "),
    };
    println!(
        "{} test images of {}: MSE {:.6} (pixels in [0,1]), PSNR {:.2} dB, {codes}",
        report.images, options.data.dataset, report.mse, report.psnr,
    );
    Ok(report)
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
    Setting::Batch.require_positive(batch as u64)?;
    let _no_grad = autograd::no_grad();
    let gpu = model.params.gpu().clone();
    let total = data.len().min(limit);
    let (mut sq, mut values, mut nll, mut kl) = (0f64, 0usize, 0f64, 0f64);
    let progress = Progress::new(0, total as u64);
    for start in (0..total).step_by(batch) {
        let range = start..(start + batch).min(total);
        let end = range.end;
        let n = range.len() as f64;
        let (x, host) = load_images(data, range, &gpu)?;
        let out = model.forward(&x, start as u64, variance, false);
        add_squared_error(&mut sq, &host, &out.recon.to_vec()?);
        values += host.len();
        if let (Some(r), Some(k)) = (&out.recon_nll, &out.kl) {
            nll += r.item()? as f64 * n;
            kl += k.item()? as f64 * n;
        }
        progress.advance(end as u64);
    }
    let mse = checked_mean(sq, values)?;
    if !(nll.is_finite() && kl.is_finite()) {
        return Err(not_finite());
    }
    let per = total as f64;
    Ok(AeReport {
        images: total,
        mse,
        psnr: psnr(mse),
        nll_kl: model.config.variational().then_some((nll / per, kl / per)),
    })
}

/// `eval ae`: loads the checkpoint, evaluates it on the test split and prints the report.
pub fn autoencoder(gpu: &Gpu, options: &EvalOptions) -> Result<AeReport> {
    let ck = Checkpoint::load(&options.checkpoint)?;
    let model = Autoencoder::from_checkpoint(gpu, &ck)?;
    let variance: f32 = ck.meta_parse("variance")?;
    let test = options.data.open(Split::Test)?;
    let r = evaluate_autoencoder(
        &model,
        test.as_ref(),
        options.batch,
        options.limit,
        variance,
    )?;
    println!("adapter: {}", gpu.adapter_name());
    println!("{} on {} test images:", model.config.kind_name(), r.images);
    println!("  MSE (pixels in [0,1]): {:.6}", r.mse);
    println!("  PSNR:                  {:.2} dB", r.psnr);
    if let Some((nll, kl)) = r.nll_kl {
        println!(
            "  -ELBO:                 {:.2} nats per image = reconstruction {nll:.2} + KL {kl:.2}",
            nll + kl
        );
    }
    Ok(r)
}

/// A trained prior and the code file whose test grids it is measured on.
#[derive(Clone, Debug)]
pub struct PriorEvalOptions {
    /// The prior's checkpoint (`train prior`).
    pub checkpoint: PathBuf,
    /// The code file (`encode`) the prior was trained on.
    pub codes: PathBuf,
    /// Code grids per forward pass.
    pub batch: usize,
    /// Measure at most this many test grids.
    pub limit: usize,
}

/// The test NLL of a prior, with the baselines it is read against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PriorEvalReport {
    /// Test grids measured.
    pub grids: usize,
    /// Mean NLL, nats per code.
    pub nll: f64,
    /// log K, nats: a prior that gives every code the same probability.
    pub uniform: f64,
    /// Entropy of the train codes' frequencies, nats: a prior that ignores the context.
    pub unigram: f64,
}

/// The grids of `file` that the prior saved in `ck` was trained on (a VQ-VAE-2's top or bottom
/// ones, as the prior records), or an error when it was trained on another dataset's codes.
fn trained_level(ck: &Checkpoint, file: &Checkpoint, codes: &std::path::Path) -> Result<CodeLevel> {
    let Ok(recorded) = ck.meta(DATASET_KEY) else {
        return Ok(CodeLevel::Bottom); // a prior that records no data
    };
    [CodeLevel::Bottom, CodeLevel::Top]
        .into_iter()
        .find(|&level| prior_dataset(file, level) == recorded)
        .ok_or_else(|| {
            ck.error(format!(
                "was trained on {recorded}, and {} holds {}: measure it on the code file it was trained on",
                codes.display(),
                prior_dataset(file, CodeLevel::Bottom)
            ))
        })
}

/// `eval prior`: the NLL of a prior over the test grids of its code file (the level it was
/// trained on, with the labels and top grids it is conditioned on), printed with its baselines.
pub fn prior(gpu: &Gpu, options: &PriorEvalOptions) -> Result<PriorEvalReport> {
    Setting::Batch.require_positive(options.batch as u64)?;
    let ck = Checkpoint::load(&options.checkpoint)?;
    let model = PixelCnn::from_checkpoint(gpu, &ck)?;
    let file = Checkpoint::load(&options.codes)?;
    let level = trained_level(&ck, &file, &options.codes)?;
    let conditioned = model.config.condition_codes > 0;
    let load = |split: &str| -> Result<CodeGrids> {
        let grids = CodeGrids::of_level(&file, split, level)?;
        if conditioned {
            grids.conditioned_on_top(&file, split)
        } else {
            Ok(grids)
        }
    };
    let (train, test) = (load("train")?, load("test")?);
    let task = PriorTask::new(gpu, model, options.batch, test.grid)?;
    let progress = Progress::new(0, test.len.min(options.limit) as u64);
    let nll = task.evaluate_reporting(&test, options.limit, &mut |done| {
        progress.advance(done as u64)
    })?;
    drop(progress);
    if !nll.is_finite() {
        return Err(not_finite());
    }
    let report = PriorEvalReport {
        grids: test.len.min(options.limit),
        nll,
        uniform: (test.codebook_size as f64).ln(),
        unigram: train.unigram_entropy(),
    };
    println!("adapter: {}", gpu.adapter_name());
    println!(
        "{} test grids of {}x{} codes (K = {}): NLL {:.4} nats = {:.3} bits per code (uniform {:.3} bits, unigram {:.3} bits)",
        report.grids,
        test.grid[0],
        test.grid[1],
        test.codebook_size,
        nll,
        bits(nll),
        bits(report.uniform),
        bits(report.unigram)
    );
    Ok(report)
}
