//! `eval classifier` and `eval samples`: the test accuracy of a classifier, and a sample-quality
//! score computed with it. The score is the Fréchet distance between Gaussians fitted to the
//! classifier's pooled features of two image sets (the FID recipe, with this classifier as the
//! feature network instead of Inception), in f64 with nalgebra.

use std::path::PathBuf;
use std::sync::Arc;

use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::autograd;
use crate::data::{Batch, DataSpec, Dataset, Split};
use crate::error::{Error, Result, Setting};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::models::classifier::Classifier;
use crate::models::load_code_model;
use crate::tensor::Tensor;

use super::for_each_batch;
use super::progress::Progress;
use super::sample::{Sampler, Sampling, SamplingRequest, MAX_SAMPLES};

/// Images per forward pass when scoring.
const BATCH: usize = 64;

/// The mean and covariance of a set of feature vectors.
#[derive(Clone, Debug)]
pub struct Moments {
    /// The mean.
    pub mean: DVector<f64>,
    /// The covariance (divided by n - 1).
    pub cov: DMatrix<f64>,
}

impl Moments {
    /// The moments of `n` vectors of length `dim` stored one after another in `features`.
    pub fn of(features: &[f64], dim: usize) -> Result<Self> {
        let n = features.len() / dim.max(1);
        if dim == 0 || n < 2 || features.len() != n * dim {
            return Err(Error::InvalidArgument(format!(
                "a Fréchet distance needs at least 2 feature vectors, got {n}"
            )));
        }
        let x = DMatrix::from_row_slice(n, dim, features);
        let mean = DVector::from_iterator(dim, x.column_iter().map(|c| c.mean()));
        let mut centred = x;
        for mut row in centred.row_iter_mut() {
            row -= mean.transpose();
        }
        let cov = centred.transpose() * &centred / (n as f64 - 1.0);
        Ok(Self { mean, cov })
    }
}

/// The square root of a symmetric positive semi-definite matrix (eigenvalues below 0 from
/// rounding count as 0).
fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let symmetric = (m + m.transpose()) * 0.5;
    let eig = SymmetricEigen::new(symmetric);
    let roots = eig.eigenvalues.map(|v| v.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&roots) * eig.eigenvectors.transpose()
}

/// The Fréchet distance between the Gaussians N(a.mean, a.cov) and N(b.mean, b.cov):
/// |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2).
pub fn frechet_distance(a: &Moments, b: &Moments) -> f64 {
    let root_a = sqrt_psd(&a.cov);
    let middle = &root_a * &b.cov * &root_a;
    let cross = sqrt_psd(&middle).trace();
    let d = (&a.mean - &b.mean).norm_squared() + a.cov.trace() + b.cov.trace() - 2.0 * cross;
    d.max(0.0)
}

/// The classifier's features (f64, one vector after another) and predicted classes of images
/// [N, C, H, W] in model units.
pub fn classify(model: &Classifier, images: &[f32]) -> Result<(Vec<f64>, Vec<u32>)> {
    let _no_grad = autograd::no_grad();
    let gpu = model.params.gpu();
    let shape = model.config.image_shape;
    let per_image: usize = shape.iter().product();
    let (mut features, mut predicted) = (Vec::new(), Vec::new());
    let progress = Progress::new(0, (images.len() / per_image) as u64);
    for chunk in images.chunks(BATCH * per_image) {
        let n = chunk.len() / per_image;
        let x = Tensor::from_slice(gpu, &[n, shape[0], shape[1], shape[2]], chunk)?;
        let f = model.features(&x);
        let logits = model.logits_of_features(&f).to_vec()?;
        features.extend(f.to_vec()?.iter().map(|&v| v as f64));
        let k = model.config.classes;
        predicted.extend(logits.chunks(k).map(|row| {
            // the first maximum
            let best = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            row.iter().position(|&v| v == best).unwrap_or(0) as u32
        }));
        progress.advance(predicted.len() as u64);
    }
    Ok((features, predicted))
}

/// The first `limit` images of `data` (model units) and their labels.
fn images_of(data: &dyn Dataset, limit: usize) -> (Vec<f32>, Vec<u32>) {
    let indices: Vec<usize> = (0..data.len().min(limit)).collect();
    let batch = Batch::gather(data, &indices, 0);
    let labels = indices
        .iter()
        .map(|&i| data.label(i).unwrap_or(0))
        .collect();
    (batch.image_inputs(), labels)
}

/// `eval classifier`: the checkpoint and the test images.
#[derive(Clone, Debug)]
pub struct ClassifierEvalOptions {
    /// The classifier checkpoint.
    pub checkpoint: PathBuf,
    /// The dataset whose test split is used.
    pub data: DataSpec,
    /// Evaluate at most this many test images.
    pub limit: usize,
}

/// Test accuracy of a classifier (the share of test images whose most likely class is their label).
pub fn classifier_accuracy(gpu: &Gpu, options: &ClassifierEvalOptions) -> Result<f64> {
    let model = Classifier::from_checkpoint(gpu, &Checkpoint::load(&options.checkpoint)?)?;
    let test = options.data.open(Split::Test)?;
    if test.image_shape() != model.config.image_shape
        || test.classes() != Some(model.config.classes)
    {
        return Err(Error::InvalidArgument(format!(
            "the classifier was trained on {:?} images of {} classes; {} test images are {:?} with {}",
            model.config.image_shape,
            model.config.classes,
            options.data.dataset,
            test.image_shape(),
            test.classes()
                .map_or("no labels".to_string(), |c| format!("{c} classes"))
        )));
    }
    let (images, labels) = images_of(test.as_ref(), options.limit);
    if labels.is_empty() {
        return Err(Error::InvalidArgument(
            "no test images: --limit must be at least 1".into(),
        ));
    }
    let (_, predicted) = classify(&model, &images)?;
    let right = predicted
        .iter()
        .zip(&labels)
        .filter(|(p, l)| p == l)
        .count();
    let accuracy = right as f64 / labels.len() as f64;
    println!(
        "{} test images of {}: accuracy {:.2}% ({right} right; chance {:.2}%)",
        labels.len(),
        options.data.dataset,
        accuracy * 100.0,
        100.0 / model.config.classes as f64
    );
    Ok(accuracy)
}

/// `eval samples`: what to score against what.
#[derive(Clone, Debug)]
pub struct SampleScoreOptions {
    /// The classifier whose features are compared.
    pub classifier: PathBuf,
    /// The VQ-VAE (or VQ-VAE-2) whose codes trained the prior.
    pub vqvae: PathBuf,
    /// The prior (a VQ-VAE-2's top codes' prior).
    pub prior: PathBuf,
    /// A VQ-VAE-2's bottom codes' prior, conditioned on the top codes.
    pub bottom_prior: Option<PathBuf>,
    /// The real images (test split: the reference set; train split: the floor).
    pub data: DataSpec,
    /// Samples drawn, real and reconstructed images compared.
    pub count: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Sampling seed (of the first draw).
    pub seed: u64,
    /// Independent draws of `count` samples, with the seeds `seed`, `seed + 1`, ...
    pub draws: usize,
}

/// The most draws `eval samples` makes.
pub const MAX_DRAWS: usize = 100;

/// The scores of one draw of `eval samples`.
#[derive(Clone, Debug, PartialEq)]
pub struct DrawScore {
    /// The draw's sampling seed.
    pub seed: u64,
    /// Distance between real test images and the draw's samples.
    pub samples: f64,
    /// For a class-conditional prior: the share of samples the classifier assigns to their class.
    pub class_agreement: Option<f64>,
}

/// The scores of `eval samples`.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleScores {
    /// Images in each set.
    pub count: usize,
    /// Distance between real test and real training images: what a perfect model would get.
    pub real_floor: f64,
    /// Distance between real test images and their VQ-VAE reconstructions.
    pub reconstructions: f64,
    /// Each draw's samples, scored.
    pub draws: Vec<DrawScore>,
}

/// The test split (the reference images) and the train split (the floor) of `data`, whose images
/// must be the classifier's.
fn real_splits(
    classifier: &Classifier,
    data: &DataSpec,
) -> Result<(Arc<dyn Dataset>, Arc<dyn Dataset>)> {
    let test = data.open(Split::Test)?;
    let shape = classifier.config.image_shape;
    if test.image_shape() != shape {
        return Err(Error::InvalidArgument(format!(
            "the classifier takes {shape:?} images; {} images are {:?}",
            data.dataset,
            test.image_shape()
        )));
    }
    Ok((test, data.open(Split::Train)?))
}

/// The moments of the classifier's features of `images`.
fn features_moments(classifier: &Classifier, images: &[f32]) -> Result<Moments> {
    Moments::of(
        &classify(classifier, images)?.0,
        classifier.config.features(),
    )
}

/// Draws samples from the prior and scores them, the reconstructions and real images with the
/// classifier's features.
pub fn score_samples(gpu: &Gpu, options: &SampleScoreOptions) -> Result<SampleScores> {
    let count = options.count;
    // two at least: a covariance needs them
    if !(2..=MAX_SAMPLES).contains(&count) {
        return Err(Error::setting(
            Setting::Count,
            format!("must be 2 to {MAX_SAMPLES}, got {count}"),
        ));
    }
    if !(1..=MAX_DRAWS).contains(&options.draws) {
        return Err(Error::setting(
            Setting::Draws,
            format!("must be 1 to {MAX_DRAWS}, got {}", options.draws),
        ));
    }
    let classifier = Classifier::from_checkpoint(gpu, &Checkpoint::load(&options.classifier)?)?;
    let sampling = Sampling::load(
        gpu,
        &options.vqvae,
        &options.prior,
        options.bottom_prior.as_deref(),
    )?;
    let (test, train) = real_splits(&classifier, &options.data)?;
    let mut vqvae = load_code_model(gpu, &options.vqvae, test.image_shape())?;
    let dim = classifier.config.features();
    let moments = |images: &[f32]| features_moments(&classifier, images);
    let (real, _) = images_of(test.as_ref(), count);
    let (other_real, _) = images_of(train.as_ref(), count);
    let reference = moments(&real)?;
    let mut recons = Vec::new();
    for_each_batch(
        vqvae.as_mut(),
        test.as_ref(),
        BATCH,
        count,
        &mut |_, recon, _| {
            recons.extend(recon.to_vec()?);
            Ok(())
        },
    )?;
    // one row per class for a conditional prior, as `sample` draws them
    let classes = sampling.classes();
    let labels: Option<Vec<u32>> =
        (classes > 0).then(|| (0..count).map(|i| (i * classes / count) as u32).collect());
    let progress = Progress::new(0, (count * options.draws) as u64);
    let mut draws = Vec::with_capacity(options.draws);
    for d in 0..options.draws {
        let seed = options.seed.wrapping_add(d as u64);
        let mut samples = Vec::new();
        // in parts of BATCH images, whose code grids together are one draw of `count`
        for start in (0..count).step_by(BATCH) {
            let n = BATCH.min(count - start);
            let request = SamplingRequest {
                sampler: Sampler::Cached,
                count: n,
                labels: labels.as_ref().map(|l| &l[start..start + n]),
                temperature: options.temperature,
                seed,
                first: start,
            };
            samples.extend(sampling.draw(&request, false)?.images);
            progress.advance((d * count + start + n) as u64);
        }
        let (features, predicted) = classify(&classifier, &samples)?;
        let class_agreement = labels.as_ref().map(|l| {
            let right = predicted.iter().zip(l).filter(|(p, l)| p == l).count();
            right as f64 / count as f64
        });
        draws.push(DrawScore {
            seed,
            samples: frechet_distance(&reference, &Moments::of(&features, dim)?),
            class_agreement,
        });
    }
    drop(progress);
    let scores = SampleScores {
        count,
        real_floor: frechet_distance(&reference, &moments(&other_real)?),
        reconstructions: frechet_distance(&reference, &moments(&recons)?),
        draws,
    };
    print_sample_scores(&scores, classes);
    Ok(scores)
}

/// Prints the scores of `eval samples`: one line of distances (each draw's and, for several,
/// their mean and range), and the class agreement of a conditional prior's samples.
fn print_sample_scores(scores: &SampleScores, classes: usize) {
    let count = scores.count;
    let fds: Vec<f64> = scores.draws.iter().map(|d| d.samples).collect();
    let samples = match &scores.draws[..] {
        [one] => format!("samples {:.3}", one.samples),
        draws => format!(
            "samples of {} draws (seeds {} to {}) {} ({})",
            draws.len(),
            draws[0].seed,
            draws[draws.len() - 1].seed,
            list(&fds, |v| format!("{v:.3}")),
            spread(&fds, |v| format!("{v:.3}"))
        ),
    };
    println!(
        "Fréchet distance to {count} real test images, in the classifier's features: real training images {:.3} (the floor), reconstructions {:.3}, {samples}",
        scores.real_floor, scores.reconstructions
    );
    let agreements: Vec<f64> = scores
        .draws
        .iter()
        .filter_map(|d| d.class_agreement)
        .collect();
    if agreements.is_empty() {
        return;
    }
    let percent = |v: f64| format!("{:.1}%", v * 100.0);
    let shares = match &agreements[..] {
        [one] => percent(*one),
        all => format!("{} ({})", list(all, percent), spread(all, percent)),
    };
    println!(
        "class agreement: {shares} of the samples are classified as the class they were drawn for (chance {:.1}%)",
        100.0 / classes as f64
    );
}

/// `values` written by `show`, comma-separated.
fn list(values: &[f64], show: impl Fn(f64) -> String) -> String {
    values
        .iter()
        .map(|&v| show(v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The mean and range of `values`, written by `show`.
fn spread(values: &[f64], show: impl Fn(f64) -> String) -> String {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("mean {}, range {} to {}", show(mean), show(min), show(max))
}

/// `eval samples --grid`: images from a PNG grid scored against real images.
#[derive(Clone, Debug)]
pub struct GridScoreOptions {
    /// The classifier whose features are compared.
    pub classifier: PathBuf,
    /// A PNG grid as `sample` (or `save_grid`) writes it, of the dataset's image size.
    pub grid: PathBuf,
    /// The real images (test split: the reference set; train split: the floor).
    pub data: DataSpec,
}

/// The scores of `eval samples --grid`.
#[derive(Clone, Debug, PartialEq)]
pub struct GridScores {
    /// Images in the grid, and real images in each reference set.
    pub count: usize,
    /// Distance between real test and real training images of that count: the floor.
    pub real_floor: f64,
    /// Distance between real test images and the grid's images.
    pub grid: f64,
}

/// Reads the images of a PNG grid and scores them against as many real test images, with the
/// floor of real training images, in the classifier's features.
pub fn score_grid(gpu: &Gpu, options: &GridScoreOptions) -> Result<GridScores> {
    let classifier = Classifier::from_checkpoint(gpu, &Checkpoint::load(&options.classifier)?)?;
    let shape = classifier.config.image_shape;
    let images = crate::io::grid::load_grid(&options.grid, shape)?;
    let count = images.len() / shape.iter().product::<usize>();
    if !(2..=MAX_SAMPLES).contains(&count) {
        return Err(Error::InvalidArgument(format!(
            "{}: {count} images; a score needs 2 to {MAX_SAMPLES}",
            options.grid.display()
        )));
    }
    let (test, train) = real_splits(&classifier, &options.data)?;
    let dim = classifier.config.features();
    let moments = |images: &[f32]| features_moments(&classifier, images);
    let reference = moments(&images_of(test.as_ref(), count).0)?;
    let scores = GridScores {
        count,
        real_floor: frechet_distance(&reference, &moments(&images_of(train.as_ref(), count).0)?),
        grid: frechet_distance(&reference, &moments(&images)?),
    };
    println!(
        "Fréchet distance to {count} real test images, in the classifier's features: real training images {:.3} (the floor), the {count} images of {} {:.3}",
        scores.real_floor,
        options.grid.display(),
        scores.grid
    );
    if count <= dim {
        println!(
            "note: {count} images for {dim} features: the covariances are estimated poorly and the distances are mostly noise; compare with the floor, or score a grid of more than {dim} images"
        );
    }
    Ok(scores)
}
