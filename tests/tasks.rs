//! The commands as library functions: the whole pipeline on a tiny setting, and a training run
//! continued through the one resume path.

mod common;
use common::*;
use vqgpu::data::{CodeGrids, DataSpec};
use vqgpu::models::pixelcnn::PixelCnnConfig;
use vqgpu::nn::LrSchedule;
use vqgpu::tasks::eval::{self, PriorEvalOptions};
use vqgpu::tasks::pipeline::{self, PipelineOptions};
use vqgpu::tasks::train::{self, RunOptions, VqVaeOptions};
use vqgpu::train::{CHECKPOINT_FILE, METRICS_FILE};

/// `eval prior` of `prior` on `codes`, `batch` grids at a time.
fn eval_prior(
    gpu: &vqgpu::Gpu,
    prior: &std::path::Path,
    codes: &std::path::Path,
    batch: usize,
    limit: usize,
) -> vqgpu::Result<eval::PriorEvalReport> {
    let options = PriorEvalOptions {
        checkpoint: prior.to_path_buf(),
        codes: codes.to_path_buf(),
        batch,
        limit,
    };
    eval::prior(gpu, &options)
}

/// Whether two NLLs are the same measurement (the same sums, up to rounding).
fn same_nll(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs())
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vqgpu-tasks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn the_pipeline_trains_encodes_trains_the_prior_and_samples() {
    let gpu = gpu();
    let out = temp_dir("pipeline");
    let options = PipelineOptions {
        out: out.clone(),
        vqvae: tiny_vqvae(),
        vqvae_steps: 10,
        vqvae_batch: 8,
        encode_limit: 64,
        prior: PixelCnnConfig {
            channels: 8,
            layers: 2,
            head: 16,
            ..PixelCnnConfig::default()
        },
        prior_steps: 6,
        prior_batch: 8,
        eval_grids: 16,
        count: 4,
        ..PipelineOptions::default()
    };
    let report = pipeline::run(&gpu, &options).unwrap();
    for file in [&report.vqvae, &report.codes, &report.prior, &report.samples] {
        assert!(file.is_file(), "{} missing", file.display());
    }
    assert!(out.join("vqvae").join(METRICS_FILE).is_file());
    assert!(out.join("prior").join(METRICS_FILE).is_file());
    // the code file: the first 64 images of each split as 8x8 grids of 16 codes, with the labels
    // of shapes' four classes, so the prior was conditional and drew one row per class
    let codes = CodeGrids::load(&report.codes, "train").unwrap();
    assert_eq!(
        (codes.len, codes.grid, codes.codebook_size, codes.classes),
        (64, [8, 8], 16, 4)
    );
    assert!(
        report.test_nll.is_finite() && report.test_nll > 0.0,
        "test NLL {}",
        report.test_nll
    );
    // `eval prior` measures the saved prior as the end of its training did, on all 64 test grids
    let measured = eval_prior(&gpu, &report.prior, &report.codes, 8, usize::MAX).unwrap();
    assert_eq!(measured.grids, 64);
    assert!(same_nll(measured.nll, report.test_nll), "{measured:?}");
    assert!(same_nll(measured.uniform, 16f64.ln()));
    assert!(measured.unigram > 0.0 && measured.unigram <= measured.uniform + 1e-9);
    assert_eq!(
        eval_prior(&gpu, &report.prior, &report.codes, 8, 10)
            .unwrap()
            .grids,
        10
    );
    // the progress of a measurement: the grids submitted after each batch
    let ck = vqgpu::io::checkpoint::Checkpoint::load(&report.prior).unwrap();
    let model = vqgpu::models::pixelcnn::PixelCnn::from_checkpoint(&gpu, &ck).unwrap();
    let test = CodeGrids::load(&report.codes, "test").unwrap();
    let task = vqgpu::train::PriorTask::new(&gpu, model, 24, test.grid).unwrap();
    let mut submitted = Vec::new();
    let nll = task
        .evaluate_reporting(&test, 60, &mut |n| submitted.push(n))
        .unwrap();
    assert_eq!(submitted, [24, 48, 60]);
    assert!(nll.is_finite());
    // ... and refuses the codes of another dataset
    let mut other = vqgpu::io::checkpoint::Checkpoint::load(&report.codes).unwrap();
    other.set("dataset", "fashion-mnist");
    let other_path = out.join("other.safetensors");
    other.save(&other_path).unwrap();
    let err = eval_prior(&gpu, &report.prior, &other_path, 8, usize::MAX)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("was trained on codes of shapes") && err.contains("codes of fashion-mnist"),
        "{err}"
    );
    // one row per class of one sample each, 32x32 drawn at twice the size with 2-pixel gaps
    let png = image::open(&report.samples).unwrap();
    assert_eq!((png.width(), png.height()), (66 + 2, 4 * 66 + 2));
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_late_stage_setting_is_refused_before_the_first_stage_trains() {
    use vqgpu::models::vqvae::VqVaeConfig;
    use vqgpu::tasks::pipeline::PipelineModel;
    let gpu = gpu();
    let out = temp_dir("pipeline-refused");
    let base = PipelineOptions {
        out: out.clone(),
        vqvae: tiny_vqvae(),
        ..PipelineOptions::default()
    };
    let cases = [
        (
            PipelineOptions {
                count: 0,
                ..base.clone()
            },
            "count must be 1 to 4096, got 0",
        ),
        (
            PipelineOptions {
                encode_limit: 0,
                ..base.clone()
            },
            "image limit must be at least 1",
        ),
        (
            PipelineOptions {
                prior_steps: 0,
                ..base.clone()
            },
            "number of steps must be at least 1, got 0",
        ),
        (
            PipelineOptions {
                temperature: f32::NAN,
                ..base.clone()
            },
            "temperature must be a number >= 0, got NaN",
        ),
        (
            PipelineOptions {
                vqvae: VqVaeConfig {
                    codebook_size: 20_000,
                    ..tiny_vqvae()
                },
                ..base.clone()
            },
            "must be at most 16384 for a prior over the codes, got 20000",
        ),
        (
            PipelineOptions {
                prior: PixelCnnConfig {
                    kernel: 4,
                    ..base.prior.clone()
                },
                ..base.clone()
            },
            "kernel size must be 3, 5 or 7, got 4",
        ),
        // attention over a VQ-VAE-2's top codes only: heads that do not divide the channels
        (
            PipelineOptions {
                model: PipelineModel::Vqvae2,
                prior: PixelCnnConfig {
                    channels: 30,
                    heads: 4,
                    ..base.prior.clone()
                },
                ..base.clone()
            },
            "the 4 attention heads must divide the 30 channels",
        ),
    ];
    for (options, says) in cases {
        let err = pipeline::run(&gpu, &options).unwrap_err().to_string();
        assert!(err.contains(says), "unclear error: {err}");
        assert!(!out.exists(), "{says}: a stage ran before the refusal");
    }
    // a folder without a test split (fewer than 10 images): the encoding stage would need one
    let few = temp_dir("pipeline-few-images");
    std::fs::create_dir_all(&few).unwrap();
    for i in 0..3u8 {
        image::RgbImage::from_pixel(8, 8, image::Rgb([i, 2 * i, 3 * i]))
            .save(few.join(format!("{i}.png")))
            .unwrap();
    }
    let folder = PipelineOptions {
        data: DataSpec {
            dataset: "folder".into(),
            dir: Some(few.clone()),
            ..DataSpec::default()
        },
        ..base.clone()
    };
    let err = pipeline::run(&gpu, &folder).unwrap_err().to_string();
    assert!(err.contains("too few for a Test split"), "{err}");
    assert!(!out.exists(), "the first stage ran before the refusal");
    std::fs::remove_dir_all(&few).ok();
    // an earlier pipeline's later runs or code file, without --overwrite: refused before the
    // first stage (which alone would not notice them)
    for (model, earlier) in [
        (PipelineModel::Vqvae, "prior/metrics.csv"),
        (PipelineModel::Vqvae2, "bottom_prior/checkpoint.safetensors"),
        (PipelineModel::Vqvae, "codes.safetensors"),
    ] {
        let file = out.join(earlier);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"earlier").unwrap();
        let options = PipelineOptions {
            model,
            ..base.clone()
        };
        let err = pipeline::run(&gpu, &options).unwrap_err().to_string();
        assert!(err.contains("--overwrite"), "{earlier}: {err}");
        let entries = std::fs::read_dir(&out).unwrap().count();
        assert_eq!(entries, 1, "{earlier}: a stage ran before the refusal");
        std::fs::remove_dir_all(&out).unwrap();
    }
    // the same heads over a one-level VQ-VAE's codes: its prior has no attention
    let one_level = PipelineOptions {
        prior: PixelCnnConfig {
            channels: 30,
            heads: 4,
            ..base.prior.clone()
        },
        ..base
    };
    assert!(one_level.validate().is_ok());
}

/// `pipeline --model vqvae2` on `shapes` at 64x64, tiny: a VQ-VAE-2, both levels encoded, a
/// prior over the top codes, one over the bottom codes given them, and samples of 64x64.
#[test]
fn the_vqvae2_pipeline_trains_both_priors_and_samples() {
    use vqgpu::tasks::pipeline::PipelineModel;
    let gpu = gpu();
    let out = temp_dir("pipeline2");
    let options = PipelineOptions {
        data: DataSpec {
            image_size: Some(64),
            ..DataSpec::default()
        },
        out: out.clone(),
        model: PipelineModel::Vqvae2,
        vqvae: tiny_vqvae(),
        vqvae_steps: 6,
        vqvae_batch: 4,
        encode_limit: 16,
        prior: PixelCnnConfig {
            channels: 8,
            layers: 2,
            head: 16,
            attention_every: 1,
            heads: 2,
            ..PixelCnnConfig::default()
        },
        prior_steps: 4,
        prior_batch: 4,
        eval_grids: 8,
        count: 4,
        ..PipelineOptions::default()
    };
    let report = pipeline::run(&gpu, &options).unwrap();
    let (bottom, bottom_nll) = report.bottom_prior.clone().expect("a bottom prior");
    for file in [
        &report.vqvae,
        &report.codes,
        &report.prior,
        &bottom,
        &report.samples,
    ] {
        assert!(file.is_file(), "{} missing", file.display());
    }
    assert!(report.test_nll.is_finite() && bottom_nll.is_finite());
    // `eval prior` finds each prior's level (and the top grids the bottom one is conditioned on)
    for (prior, nll) in [(&report.prior, report.test_nll), (&bottom, bottom_nll)] {
        let measured = eval_prior(&gpu, prior, &report.codes, 4, usize::MAX).unwrap();
        assert_eq!(measured.grids, 16);
        assert!(
            same_nll(measured.nll, nll),
            "{}: {measured:?} against {nll}",
            prior.display()
        );
    }
    // resumed with nothing left to train: both priors kept and measured as before
    let bottom_bytes = std::fs::read(&bottom).unwrap();
    let resume = PipelineOptions {
        resume: true,
        ..options.clone()
    };
    let again = pipeline::run(&gpu, &resume).unwrap();
    let (again_bottom, again_nll) = again.bottom_prior.expect("a bottom prior");
    assert_eq!(std::fs::read(&again_bottom).unwrap(), bottom_bytes);
    assert!(same_nll(again_nll, bottom_nll) && same_nll(again.test_nll, report.test_nll));
    // attention in the top codes' prior only
    for (prior, attention) in [(&report.prior, "1"), (&bottom, "0")] {
        let ck = vqgpu::io::checkpoint::Checkpoint::load(prior).unwrap();
        assert_eq!(ck.meta("attention_every").unwrap(), attention);
    }
    let top = CodeGrids::of_level(
        &vqgpu::io::checkpoint::Checkpoint::load(&report.codes).unwrap(),
        "train",
        vqgpu::data::CodeLevel::Top,
    )
    .unwrap();
    assert_eq!((top.len, top.grid), (16, [8, 8]));
    // one row per class of one 64x64 sample each (drawn at their size), with 2-pixel gaps
    let png = image::open(&report.samples).unwrap();
    assert_eq!((png.width(), png.height()), (66 + 2, 4 * 66 + 2));
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_training_run_continues_from_its_directory() {
    let gpu = gpu();
    let out = temp_dir("resume");
    let run = |steps: u64, resume: bool| RunOptions {
        steps,
        batch: 4,
        lr: 1e-3,
        lr_schedule: LrSchedule::Constant,
        seed: 3,
        out: (!resume).then(|| out.clone()),
        resume: resume.then(|| out.clone()),
        log_every: 2,
        sample_every: 0,
        save_every: 0,
        overwrite: false,
    };
    let options = |steps, resume| VqVaeOptions {
        data: DataSpec::default(),
        run: run(steps, resume),
        model: tiny_vqvae(),
    };
    let first = train::vqvae(&gpu, &options(4, false)).unwrap();
    assert_eq!((first.step, &first.out), (4, &out));
    let again = train::vqvae(&gpu, &options(6, true)).unwrap();
    assert_eq!((again.step, &again.out), (6, &out));
    let csv = std::fs::read_to_string(out.join(METRICS_FILE)).unwrap();
    let steps: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["2", "4", "6"],
        "one row per log, the resumed run appending"
    );
    // a run that has reached its steps is not continued
    let err = train::vqvae(&gpu, &options(6, true)).unwrap_err();
    assert!(err.to_string().contains("step 6"), "{err}");
    // a run on a cosine schedule over 2 steps records it, and cannot go past them
    let cosine = VqVaeOptions {
        run: RunOptions {
            lr_schedule: LrSchedule::Cosine,
            overwrite: true,
            ..run(2, false)
        },
        ..options(2, false)
    };
    train::vqvae(&gpu, &cosine).unwrap();
    let ck = vqgpu::io::checkpoint::Checkpoint::load(&out.join(CHECKPOINT_FILE)).unwrap();
    assert_eq!(ck.meta("lr_schedule").unwrap(), "cosine");
    assert_eq!(ck.meta("lr_schedule_steps").unwrap(), "2");
    let err = train::vqvae(&gpu, &options(3, true))
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 2") && err.contains("cosine"), "{err}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_resumed_pipeline_keeps_finished_stages_and_continues_the_interrupted_one() {
    use vqgpu::io::checkpoint::Checkpoint;
    let gpu = gpu();
    let options = |out: &std::path::Path, prior_steps: u64, resume: bool| PipelineOptions {
        out: out.to_path_buf(),
        vqvae: tiny_vqvae(),
        vqvae_steps: 6,
        vqvae_batch: 8,
        encode_limit: 32,
        prior: PixelCnnConfig {
            channels: 8,
            layers: 2,
            head: 16,
            ..PixelCnnConfig::default()
        },
        prior_steps,
        prior_batch: 8,
        eval_grids: 8,
        count: 4,
        resume,
        // a prior on the default cosine schedule cannot grow its steps (checked below)
        prior_lr_schedule: LrSchedule::Constant,
        ..PipelineOptions::default()
    };
    let (straight_dir, resumed_dir) = (temp_dir("pipeline-straight"), temp_dir("pipeline-resumed"));
    let straight = pipeline::run(&gpu, &options(&straight_dir, 6, false)).unwrap();
    // a pipeline whose prior stopped at step 4, then resumed to step 6
    let first = pipeline::run(&gpu, &options(&resumed_dir, 4, false)).unwrap();
    let (vqvae, codes) = (
        std::fs::read(&first.vqvae).unwrap(),
        std::fs::read(&first.codes).unwrap(),
    );
    let resumed = pipeline::run(&gpu, &options(&resumed_dir, 6, true)).unwrap();
    // the finished VQ-VAE and its codes are kept as they were
    assert_eq!(std::fs::read(&resumed.vqvae).unwrap(), vqvae);
    assert_eq!(std::fs::read(&resumed.codes).unwrap(), codes);
    // the prior continued where it stopped: the same tensors as the straight pipeline's
    let tensors = |path: &std::path::Path| Checkpoint::load(path).unwrap().tensors;
    assert_eq!(tensors(&resumed.prior), tensors(&straight.prior));
    assert_eq!(resumed.test_nll, straight.test_nll);
    // resumed again with nothing left to train: every run kept, the prior measured again
    let prior = std::fs::read(&resumed.prior).unwrap();
    let again = pipeline::run(&gpu, &options(&resumed_dir, 6, true)).unwrap();
    assert_eq!(std::fs::read(&again.prior).unwrap(), prior);
    assert!(same_nll(again.test_nll, resumed.test_nll));
    assert!(again.samples.is_file());
    // nothing to resume, and --resume with --overwrite
    let err = pipeline::run(&gpu, &options(&temp_dir("pipeline-none"), 6, true))
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds no pipeline to resume"), "{err}");
    let both = PipelineOptions {
        overwrite: true,
        ..options(&resumed_dir, 6, true)
    };
    let err = pipeline::run(&gpu, &both).unwrap_err().to_string();
    assert!(err.contains("choose one"), "{err}");
    // a prior on a cosine schedule over 4 steps is not continued to 6
    let cosine = |steps, resume: bool| PipelineOptions {
        prior_lr_schedule: LrSchedule::Cosine,
        overwrite: !resume,
        ..options(&straight_dir, steps, resume)
    };
    pipeline::run(&gpu, &cosine(4, false)).unwrap();
    let err = pipeline::run(&gpu, &cosine(6, true))
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 4") && err.contains("cosine"), "{err}");
    std::fs::remove_dir_all(&straight_dir).ok();
    std::fs::remove_dir_all(&resumed_dir).ok();
}
