//! The sample-quality score: the Fréchet distance against closed forms and an independent f64
//! reference, the moments of feature sets, and the classifier it uses.

mod common;
use common::*;
use nalgebra::{DMatrix, DVector};
use rand::Rng;
use std::path::{Path, PathBuf};
use vqgpu::models::classifier::{Classifier, ClassifierConfig};
use vqgpu::tasks::score::{classify, frechet_distance, Moments};

fn gaussian(mean: &[f64], cov: DMatrix<f64>) -> Moments {
    Moments {
        mean: DVector::from_column_slice(mean),
        cov,
    }
}

/// The square root of a 2x2 symmetric positive definite matrix, in closed form:
/// (M + sqrt(det M) I) / sqrt(tr M + 2 sqrt(det M)).
fn sqrt2(m: [[f64; 2]; 2]) -> [[f64; 2]; 2] {
    let s = (m[0][0] * m[1][1] - m[0][1] * m[1][0]).sqrt();
    let t = (m[0][0] + m[1][1] + 2.0 * s).sqrt();
    [
        [(m[0][0] + s) / t, m[0][1] / t],
        [m[1][0] / t, (m[1][1] + s) / t],
    ]
}

fn mul2(a: [[f64; 2]; 2], b: [[f64; 2]; 2]) -> [[f64; 2]; 2] {
    let mut c = [[0.0; 2]; 2];
    for i in 0..2 {
        for j in 0..2 {
            c[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j];
        }
    }
    c
}

#[test]
fn frechet_distance_matches_closed_forms() {
    // diagonal covariances: sum (mu_a - mu_b)^2 + (sqrt(s_a) - sqrt(s_b))^2
    let a = gaussian(
        &[1.0, -2.0, 0.5],
        DMatrix::from_diagonal(&DVector::from_vec(vec![4.0, 1.0, 0.25])),
    );
    let b = gaussian(
        &[0.0, 1.0, 0.5],
        DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 9.0, 0.25])),
    );
    let want = 1.0 + 9.0 + 0.0 + (2.0f64 - 1.0).powi(2) + (1.0f64 - 3.0).powi(2) + 0.0;
    assert!(
        (frechet_distance(&a, &b) - want).abs() < 1e-9,
        "{} vs {want}",
        frechet_distance(&a, &b)
    );
    // symmetric, and 0 for a distribution with itself
    assert!((frechet_distance(&b, &a) - want).abs() < 1e-9);
    assert!(frechet_distance(&a, &a).abs() < 1e-9);
    // full 2x2 covariances that do not commute, against the closed-form square roots
    let (sa, sb) = ([[2.0, 0.8], [0.8, 1.0]], [[1.5, -0.6], [-0.6, 0.7]]);
    let root_a = sqrt2(sa);
    let cross = sqrt2(mul2(mul2(root_a, sb), root_a));
    let want = (0.3f64).powi(2) + (0.4f64).powi(2) + sa[0][0] + sa[1][1] + sb[0][0] + sb[1][1]
        - 2.0 * (cross[0][0] + cross[1][1]);
    let to_matrix =
        |m: [[f64; 2]; 2]| DMatrix::from_row_slice(2, 2, &[m[0][0], m[0][1], m[1][0], m[1][1]]);
    let got = frechet_distance(
        &gaussian(&[0.3, 0.0], to_matrix(sa)),
        &gaussian(&[0.0, -0.4], to_matrix(sb)),
    );
    assert!((got - want).abs() < 1e-9, "{got} vs {want}");
}

#[test]
fn feature_sets_compared_with_themselves_and_shifted() {
    let mut rng = rng(61);
    let (n, dim) = (2000, 6);
    let features: Vec<f64> = (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    let m = Moments::of(&features, dim).unwrap();
    // the sample moments of uniform(-1, 1): mean 0, variance 1/3
    assert!(m.mean.iter().all(|v| v.abs() < 0.05));
    assert!((0..dim).all(|i| (m.cov[(i, i)] - 1.0 / 3.0).abs() < 0.03));
    assert!(frechet_distance(&m, &m).abs() < 1e-9, "a set with itself");
    // a shift by delta moves only the mean: the distance is |delta|^2
    let delta = [0.5, 0.0, -0.25, 0.0, 0.0, 1.0];
    let shifted: Vec<f64> = features
        .iter()
        .enumerate()
        .map(|(i, v)| v + delta[i % dim])
        .collect();
    let d = frechet_distance(&m, &Moments::of(&shifted, dim).unwrap());
    let want: f64 = delta.iter().map(|v| v * v).sum();
    assert!((d - want).abs() < 1e-6, "{d} vs {want}");
    // another draw of the same distribution is close, a wider one is not
    let other: Vec<f64> = (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    let wider: Vec<f64> = other.iter().map(|v| v * 2.0).collect();
    let same = frechet_distance(&m, &Moments::of(&other, dim).unwrap());
    let far = frechet_distance(&m, &Moments::of(&wider, dim).unwrap());
    assert!(
        same < 0.02 && far > 0.5,
        "same distribution {same}, wider {far}"
    );
    assert!(
        Moments::of(&features[..dim], dim).is_err(),
        "one vector has no covariance"
    );
}

#[test]
fn classifier_features_and_predictions_have_their_shapes() {
    let gpu = gpu();
    let config = ClassifierConfig {
        image_shape: [3, 8, 12],
        channels: 3,
        classes: 5,
    };
    let model = Classifier::new(&gpu, config.clone(), 4).unwrap();
    let mut rng = rng(62);
    let n = 70; // more than one batch of 64
    let images = random(&mut rng, n * 3 * 8 * 12);
    let (features, predicted) = classify(&model, &images).unwrap();
    assert_eq!(features.len(), n * config.features());
    assert_eq!(predicted.len(), n);
    assert!(predicted.iter().all(|&p| p < 5));
    // the pooled features of post-ReLU maps are non-negative
    assert!(features.iter().all(|&f| f >= 0.0));
    assert!(ClassifierConfig {
        classes: 1,
        ..config
    }
    .validate()
    .is_err());
}

/// Trains a classifier (16 channels) on `dataset` for `steps` steps at batch 32 into `out` and
/// returns its checkpoint and its accuracy on the first 500 test images.
fn train_classifier(
    gpu: &vqgpu::gpu::Gpu,
    dataset: &str,
    steps: u64,
    out: &Path,
) -> (PathBuf, f64) {
    use vqgpu::data::DataSpec;
    use vqgpu::tasks::score::{classifier_accuracy, ClassifierEvalOptions};
    use vqgpu::tasks::train::{self, ClassifierOptions, RunOptions};
    let _ = std::fs::remove_dir_all(out);
    let data = DataSpec {
        dataset: dataset.into(),
        ..DataSpec::default()
    };
    let report = train::classifier(
        gpu,
        &ClassifierOptions {
            data: data.clone(),
            run: RunOptions {
                steps,
                batch: 32,
                lr: 1e-3,
                lr_schedule: vqgpu::nn::LrSchedule::Constant,
                seed: 0,
                out: Some(out.to_path_buf()),
                resume: None,
                log_every: 50,
                sample_every: 0,
                save_every: 0,
                overwrite: false,
            },
            channels: 16,
        },
    )
    .unwrap_or_else(|e| panic!("training a classifier on {dataset}: {e}"));
    let accuracy = classifier_accuracy(
        gpu,
        &ClassifierEvalOptions {
            checkpoint: report.checkpoint.clone(),
            data,
            limit: 500,
        },
    )
    .unwrap();
    (report.checkpoint, accuracy)
}

/// The classifier learns the labels of `shapes` (the kind of each scene's largest shape) well
/// above chance in a short run: 200 steps at batch 32 reach 41% on 500 test images on lavapipe,
/// against 25% for guessing (a 4-sigma margin is 33%).
#[test]
fn the_classifier_learns_the_labels_of_shapes() {
    let gpu = gpu();
    let out = std::env::temp_dir().join(format!("vqgpu-classifier-{}", std::process::id()));
    let (checkpoint, accuracy) = train_classifier(&gpu, "shapes", 200, &out);
    assert!(accuracy > 0.33, "test accuracy {accuracy} (chance 0.25)");
    grids_of_real_images_score_near_the_floor_and_noise_far(&gpu, &checkpoint, &out);
    samples_of_either_system_are_scored(&gpu, &checkpoint, &out);
    std::fs::remove_dir_all(&out).ok();
}

/// The classifier learns Fashion-MNIST's ten classes well above chance: 200 steps at batch 32
/// reach 50% on 500 test images on lavapipe, against 10% for guessing (a 4-sigma margin is 16%).
/// Needs the dataset in /usr/share/datasets/fashion-mnist (`apt-get install
/// dataset-fashion-mnist`, as CI does); without it the test fails and says so.
#[test]
fn the_classifier_learns_the_labels_of_fashion_mnist() {
    let gpu = gpu();
    let out = std::env::temp_dir().join(format!("vqgpu-classifier-fm-{}", std::process::id()));
    let (_, accuracy) = train_classifier(&gpu, "fashion-mnist", 200, &out);
    assert!(accuracy > 0.3, "test accuracy {accuracy} (chance 0.1)");
    std::fs::remove_dir_all(&out).ok();
}

/// `eval samples --grid` with the classifier trained above (64 features): a PNG grid of 200 real
/// training images scores about the floor (the same images, quantized to 8 bits), one of noise far
/// above it, and a grid of another image size is refused.
fn grids_of_real_images_score_near_the_floor_and_noise_far(
    gpu: &vqgpu::Gpu,
    classifier: &std::path::Path,
    dir: &std::path::Path,
) {
    use vqgpu::data::{Batch, DataSpec, Split};
    use vqgpu::io::grid::save_grid;
    use vqgpu::tasks::score::{score_grid, GridScoreOptions};
    let train = DataSpec::default().open(Split::Train).unwrap();
    let indices: Vec<usize> = (0..200).collect();
    let real = Batch::gather(train.as_ref(), &indices, 0).image_inputs();
    let noise = random(&mut rng(63), real.len())
        .iter()
        .map(|v| v * 0.5)
        .collect::<Vec<f32>>();
    let score = |images: &[f32], name: &str, shape: [usize; 3]| {
        let grid = dir.join(name);
        save_grid(&grid, images, shape, 16).unwrap();
        score_grid(
            gpu,
            &GridScoreOptions {
                classifier: classifier.to_path_buf(),
                grid,
                data: DataSpec::default(),
            },
        )
    };
    let real_score = score(&real, "real.png", [3, 32, 32]).unwrap();
    assert_eq!(real_score.count, 200);
    assert!(
        (real_score.grid - real_score.real_floor).abs() <= 0.05 * real_score.real_floor + 1e-3,
        "real images {} against the floor {}",
        real_score.grid,
        real_score.real_floor
    );
    let noise_score = score(&noise, "noise.png", [3, 32, 32]).unwrap();
    assert!(
        noise_score.grid > 5.0 * noise_score.real_floor,
        "noise {} against the floor {}",
        noise_score.grid,
        noise_score.real_floor
    );
    let err = score(&real[..200 * 3 * 28 * 28], "small.png", [3, 28, 28])
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a grid of 3x32x32 images"), "{err}");
}

/// `eval samples` draws and scores samples of a VQ-VAE and its prior, and of a VQ-VAE-2 and its
/// two priors (untrained models: the scores are finite, the class agreement is there for
/// class-conditional priors); a VQ-VAE-2 without its bottom prior is refused.
fn samples_of_either_system_are_scored(
    gpu: &vqgpu::Gpu,
    classifier: &std::path::Path,
    dir: &std::path::Path,
) {
    use vqgpu::data::DataSpec;
    use vqgpu::io::checkpoint::Checkpoint;
    use vqgpu::models::pixelcnn::PixelCnnConfig;
    use vqgpu::models::{vqvae::VqVae, vqvae2::VqVae2};
    use vqgpu::tasks::score::{score_samples, SampleScoreOptions};
    use vqgpu::train::PriorTrainer;
    let sizes = small_vqvae(8, 16, 4);
    let save = |ck: Checkpoint, name: &str| {
        let path = dir.join(name);
        ck.save(&path).unwrap();
        path
    };
    let prior = |grid: usize, condition_codes: usize, attention_every: usize, name: &str| {
        let config = PixelCnnConfig {
            codes: 16,
            channels: 8,
            layers: 2,
            head: 16,
            classes: 4,
            condition_codes,
            attention_every,
            heads: 2,
            ..PixelCnnConfig::default()
        };
        let trainer = PriorTrainer::new(gpu, config, 3, 1e-3, 4, [grid, grid]).unwrap();
        save(trainer.checkpoint().unwrap(), name)
    };
    let mut ck = Checkpoint::default();
    VqVae::new(gpu, sizes.clone(), 1)
        .unwrap()
        .write_state(&mut ck)
        .unwrap();
    let one = save(ck, "vqvae.safetensors");
    let mut ck = Checkpoint::default();
    VqVae2::new(gpu, sizes, 1)
        .unwrap()
        .write_state(&mut ck)
        .unwrap();
    let two = save(ck, "vqvae2.safetensors");
    let options = |vqvae: &std::path::Path, prior: PathBuf, bottom_prior| SampleScoreOptions {
        classifier: classifier.to_path_buf(),
        vqvae: vqvae.to_path_buf(),
        prior,
        bottom_prior,
        data: DataSpec::default(),
        count: 12,
        temperature: 1.0,
        seed: 0,
        draws: 1,
    };
    let (top, bottom) = (
        prior(4, 0, 1, "top.safetensors"),
        prior(8, 16, 0, "bottom.safetensors"),
    );
    for options in [
        options(&one, prior(8, 0, 0, "prior.safetensors"), None),
        options(&two, top.clone(), Some(bottom)),
    ] {
        let scores = score_samples(gpu, &options).unwrap();
        assert_eq!(scores.count, 12);
        let [draw] = &scores.draws[..] else {
            panic!("{scores:?}: one draw asked for")
        };
        assert!(
            [scores.real_floor, scores.reconstructions, draw.samples]
                .iter()
                .all(|d| d.is_finite() && *d >= 0.0),
            "{scores:?}"
        );
        assert!(draw
            .class_agreement
            .is_some_and(|a| (0.0..=1.0).contains(&a)));
        // three draws: the first is the draw of one, the others are drawn with the next seeds
        // and score differently; the reference sets are the same
        let three = score_samples(
            gpu,
            &SampleScoreOptions {
                draws: 3,
                ..options.clone()
            },
        )
        .unwrap();
        assert_eq!(
            (three.real_floor, three.reconstructions, &three.draws[0]),
            (scores.real_floor, scores.reconstructions, draw)
        );
        let seeds: Vec<u64> = three.draws.iter().map(|d| d.seed).collect();
        assert_eq!(seeds, [0, 1, 2]);
        assert!(
            three.draws[1].samples != draw.samples && three.draws[2].samples != draw.samples,
            "{three:?}"
        );
        let seed_one = score_samples(
            gpu,
            &SampleScoreOptions {
                seed: 1,
                ..options.clone()
            },
        )
        .unwrap();
        assert_eq!(seed_one.draws[0], three.draws[1]);
    }
    for draws in [0, 101] {
        let many = SampleScoreOptions {
            draws,
            ..options(&one, prior(8, 0, 0, "prior.safetensors"), None)
        };
        let err = score_samples(gpu, &many).unwrap_err().to_string();
        assert!(err.contains("number of draws must be 1 to 100"), "{err}");
    }
    let err = score_samples(gpu, &options(&two, top, None)).unwrap_err();
    assert!(err.to_string().contains("--bottom-prior"), "{err}");
}
