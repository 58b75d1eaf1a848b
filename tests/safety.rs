//! Nothing lost, nothing trusted: a run directory belongs to one run (refusal, lock, --overwrite),
//! a command never writes over its own input, a diverged model is never saved, evaluation reports
//! no number computed from nothing, and metrics.csv is cut back to the checkpoint on resume.
//! (Atomic writes, checksums, canonical checkpoint bytes and CSV rows are tested in `src/io`.)

mod common;
use common::*;
use vqgpu::data::DataSpec;
use vqgpu::io::checkpoint::Checkpoint;
use vqgpu::tasks::encode::{self, EncodeOptions};
use vqgpu::tasks::eval::{self, EvalOptions};
use vqgpu::tasks::train::{self, RunOptions, VqVaeOptions};
use vqgpu::train::{RunLock, CHECKPOINT_FILE, METRICS_FILE};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vqgpu-safety-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn vqvae_run(out: &std::path::Path, steps: u64, lr: f32) -> VqVaeOptions {
    VqVaeOptions {
        data: DataSpec::default(),
        run: RunOptions {
            steps,
            batch: 4,
            lr,
            lr_schedule: vqgpu::nn::LrSchedule::Constant,
            seed: 3,
            out: Some(out.to_path_buf()),
            resume: None,
            log_every: 2,
            sample_every: 0,
            save_every: 0,
            overwrite: false,
        },
        model: tiny_vqvae(),
    }
}

fn resumed(out: &std::path::Path, steps: u64) -> VqVaeOptions {
    let mut o = vqvae_run(out, steps, 1e-3);
    o.run.out = None;
    o.run.resume = Some(out.to_path_buf());
    o
}

/// `encode` of the first `limit` shapes images with `checkpoint` into `out` (not replacing it).
fn encode_options(
    checkpoint: &std::path::Path,
    limit: usize,
    out: &std::path::Path,
) -> EncodeOptions {
    EncodeOptions {
        checkpoint: checkpoint.to_path_buf(),
        data: DataSpec::default(),
        batch: 8,
        limit,
        out: out.to_path_buf(),
        overwrite: false,
    }
}

/// The error of `encode` of the first `limit` shapes images with `checkpoint` into `out`.
fn encode_error(
    gpu: &vqgpu::Gpu,
    checkpoint: &std::path::Path,
    limit: usize,
    out: &std::path::Path,
) -> String {
    let options = encode_options(checkpoint, limit, out);
    encode::run(gpu, &options).unwrap_err().to_string()
}

#[test]
fn a_run_directory_belongs_to_one_run() {
    let gpu = gpu();
    let out = temp_dir("owned");
    train::vqvae(&gpu, &vqvae_run(&out, 2, 1e-3)).unwrap();
    let first = std::fs::read(out.join(CHECKPOINT_FILE)).unwrap();
    // a second fresh run into the directory is refused and changes nothing
    let err = train::vqvae(&gpu, &vqvae_run(&out, 2, 1e-3))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("already holds a training run") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(std::fs::read(out.join(CHECKPOINT_FILE)).unwrap(), first);
    // ... unless asked to, and then it starts a new metrics.csv
    let mut again = vqvae_run(&out, 4, 1e-3);
    again.run.overwrite = true;
    train::vqvae(&gpu, &again).unwrap();
    let csv = std::fs::read_to_string(out.join(METRICS_FILE)).unwrap();
    assert_eq!(csv.lines().count(), 3, "header and steps 2 and 4: {csv}");
    // resuming into its own directory is the way to continue it
    train::vqvae(&gpu, &resumed(&out, 6)).unwrap();
    // while another process holds the directory, no run starts in it
    let lock = RunLock::acquire(&out).unwrap();
    let err = train::vqvae(&gpu, &resumed(&out, 8))
        .unwrap_err()
        .to_string();
    assert!(err.contains("another vqgpu process"), "{err}");
    drop(lock);
    train::vqvae(&gpu, &resumed(&out, 8)).unwrap();
    // an --out that is a file: named as such, and the file left as it was
    let file = out.join(METRICS_FILE);
    let bytes = std::fs::read(&file).unwrap();
    let err = train::vqvae(&gpu, &vqvae_run(&file, 2, 1e-3))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is a file, not a directory"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn metrics_are_cut_back_to_the_checkpoint_on_resume() {
    let gpu = gpu();
    let out = temp_dir("metrics");
    train::vqvae(&gpu, &vqvae_run(&out, 4, 1e-3)).unwrap();
    // a run that crashed after logging steps 6 and 8 but before saving past step 4
    let csv = out.join(METRICS_FILE);
    let mut text = std::fs::read_to_string(&csv).unwrap();
    let last = text.lines().last().unwrap().to_string();
    for step in [6, 8] {
        let row: Vec<String> = std::iter::once(step.to_string())
            .chain(last.split(',').skip(1).map(String::from))
            .collect();
        text.push_str(&row.join(","));
        text.push('\n');
    }
    std::fs::write(&csv, text).unwrap();
    train::vqvae(&gpu, &resumed(&out, 8)).unwrap();
    let steps: Vec<String> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(steps, ["2", "4", "6", "8"], "each step logged once");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_diverged_model_is_never_saved() {
    let gpu = gpu();
    let out = temp_dir("diverged");
    // save every step, log rarely: the divergence must be caught at the save, not at a log
    let mut options = vqvae_run(&out, 6, 1e30);
    options.run.save_every = 1;
    options.run.log_every = 1000;
    let err = train::vqvae(&gpu, &options).unwrap_err().to_string();
    // caught at a save (steps 1 to 5), before the only log (step 6)
    let caught_at_save = (1..6).any(|s| {
        err.contains(&format!("training diverged by step {s}:"))
            || err.contains(&format!(" at step {s}: lower"))
    });
    assert!(caught_at_save, "{err}");
    // whatever was saved before is a whole, finite checkpoint
    let path = out.join(CHECKPOINT_FILE);
    if path.exists() {
        let ck = Checkpoint::load(&path).expect("the last good checkpoint loads");
        assert!(ck.first_non_finite().is_none());
    }
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn commands_refuse_their_own_input_and_empty_evaluations() {
    let gpu = gpu();
    let out = temp_dir("inputs");
    let report = train::vqvae(&gpu, &vqvae_run(&out, 2, 1e-3)).unwrap();
    let before = std::fs::read(&report.checkpoint).unwrap();
    let err = encode_error(
        &gpu,
        &report.checkpoint,
        8,
        &out.join(".").join(CHECKPOINT_FILE),
    );
    assert!(err.contains("this command's input"), "{err}");
    assert_eq!(std::fs::read(&report.checkpoint).unwrap(), before);
    // `plot --out` onto the run's metrics.csv or its checkpoint
    let csv = out.join(METRICS_FILE);
    let metrics = std::fs::read(&csv).unwrap();
    for target in [&csv, &report.checkpoint] {
        let err = vqgpu::train::plot_metrics(&csv, target)
            .unwrap_err()
            .to_string();
        assert!(err.contains("this command's input"), "{err}");
    }
    assert_eq!(std::fs::read(&csv).unwrap(), metrics);
    assert_eq!(std::fs::read(&report.checkpoint).unwrap(), before);
    // an existing code file is replaced only when asked
    let codes = out.join("codes.safetensors");
    std::fs::write(&codes, b"a prior's codes").unwrap();
    let err = encode_error(&gpu, &report.checkpoint, 8, &codes);
    assert!(
        err.contains("already exists") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(std::fs::read(&codes).unwrap(), b"a prior's codes");
    let replace = EncodeOptions {
        overwrite: true,
        ..encode_options(&report.checkpoint, 8, &codes)
    };
    encode::run(&gpu, &replace).unwrap();
    assert_ne!(std::fs::read(&codes).unwrap(), b"a prior's codes");
    let eval = |limit| {
        eval::vqvae(
            &gpu,
            &EvalOptions {
                checkpoint: report.checkpoint.clone(),
                data: DataSpec::default(),
                batch: 8,
                limit,
            },
        )
    };
    let err = eval(0).unwrap_err().to_string();
    assert!(err.contains("no test images"), "{err}");
    let ok = eval(8).unwrap();
    assert!(ok.mse.is_finite() && ok.images == 8);
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn huge_sizes_from_flags_or_files_are_refused_before_allocating() {
    use vqgpu::models::autoencoder::{AeKind, Autoencoder, AutoencoderConfig, Bottleneck};
    use vqgpu::models::pixelcnn::{PixelCnn, PixelCnnConfig};
    use vqgpu::models::vqvae::{VqVae, VqVaeConfig};
    let gpu = gpu();
    let too_large = |r: vqgpu::Result<()>, what: &str| {
        let err = r.expect_err(what).to_string();
        assert!(err.contains("too large"), "{what}: {err}");
    };
    // --hidden 1000000 (a conv weight of 1.6e13 values), --head 100000000, --latent-dim 100000000
    let vqvae = VqVaeConfig {
        hidden: 1_000_000,
        ..tiny_vqvae()
    };
    too_large(VqVae::new(&gpu, vqvae, 0).map(drop), "hidden 1000000");
    let prior = PixelCnnConfig {
        head: 100_000_000,
        ..PixelCnnConfig::default()
    };
    too_large(PixelCnn::new(&gpu, prior, 0).map(drop), "head 100000000");
    let vae = AutoencoderConfig {
        image_shape: [3, 32, 32],
        hidden: 32,
        res_hidden: 8,
        res_layers: 1,
        bottleneck: Bottleneck::Flat { dim: 100_000_000 },
        kind: AeKind::Plain,
    };
    too_large(Autoencoder::new(&gpu, vae, 0).map(drop), "latent dim 1e8");
    // the same sizes read from a checkpoint's metadata
    let out = temp_dir("huge");
    let report = train::vqvae(&gpu, &vqvae_run(&out, 1, 1e-3)).unwrap();
    let mut ck = Checkpoint::load(&report.checkpoint).unwrap();
    ck.set("hidden", 1_000_000);
    ck.save(&report.checkpoint).unwrap();
    too_large(
        VqVae::load(&gpu, &report.checkpoint).map(drop),
        "checkpoint",
    );
    // latent-map --side 100000 or --limit 0 (checked before the checkpoint is even read)
    for (side, limit, says) in [
        (100_000, 10, "must be 2 to 64"),
        (16, 0, "limit must be at least 1"),
    ] {
        let err = vqgpu::tasks::latent_map::run(
            &gpu,
            &vqgpu::tasks::latent_map::LatentMapOptions {
                checkpoint: report.checkpoint.clone(),
                data: DataSpec::default(),
                side,
                limit,
                out: out.join("map"),
            },
        )
        .expect_err(says)
        .to_string();
        assert!(err.contains(says), "{err}");
        assert!(!out.join("map").exists());
    }
    // an IDX header whose dimensions multiply past 2^64
    let dir = out.join("idx");
    std::fs::create_dir_all(&dir).unwrap();
    let mut images = vec![0, 0, 8, 3];
    for _ in 0..3 {
        images.extend_from_slice(&u32::MAX.to_be_bytes());
    }
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), &images).unwrap();
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), &labels).unwrap();
    let err = vqgpu::data::Idx::open(&dir, vqgpu::data::Split::Test)
        .err()
        .expect("an impossible IDX header")
        .to_string();
    assert!(err.contains("more bytes than can exist"), "{err}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn folder_datasets_refuse_cut_images_and_list_each_file_once() {
    use vqgpu::data::{Dataset, Folder, Split};
    let dir = temp_dir("folder");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let picture =
        image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 15, y as u8 * 15, 99]));
    for i in 0..10 {
        picture.save(dir.join(format!("sub/{i}.png"))).unwrap();
    }
    // a symbolic link loop and a second name for a file already listed add no image
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&dir, dir.join("sub/loop")).unwrap();
        std::os::unix::fs::symlink(dir.join("sub/0.png"), dir.join("again.png")).unwrap();
    }
    let count = |split| Folder::open(&dir, split, 8).unwrap().len();
    assert_eq!((count(Split::Train), count(Split::Test)), (9, 1));
    // a JPEG and a PNG cut to 30 % are errors naming the file
    let mut jpeg = std::io::Cursor::new(Vec::new());
    picture
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    let mut png = std::io::Cursor::new(Vec::new());
    picture.write_to(&mut png, image::ImageFormat::Png).unwrap();
    for (name, bytes) in [("cut.jpg", jpeg.get_ref()), ("cut.png", png.get_ref())] {
        std::fs::write(dir.join(name), &bytes[..bytes.len() * 3 / 10]).unwrap();
        let errors: Vec<String> = [Split::Train, Split::Test]
            .into_iter()
            .filter_map(|s| Folder::open(&dir, s, 8).err().map(|e| e.to_string()))
            .collect();
        assert!(
            errors.iter().any(|e| e.contains(name)),
            "{name}: no split refused it ({errors:?})"
        );
        std::fs::remove_file(dir.join(name)).unwrap();
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn empty_requests_and_misplaced_settings_are_refused() {
    use vqgpu::tasks::sample::{self, SampleOptions, Sampler};
    let gpu = gpu();
    let out = temp_dir("empty");
    std::fs::create_dir_all(&out).unwrap();
    // --count 0 (checked before anything is loaded)
    let err = sample::run(
        &gpu,
        &SampleOptions {
            vqvae: out.join("v.safetensors"),
            prior: out.join("p.safetensors"),
            bottom_prior: None,
            count: 0,
            temperature: 1.0,
            class: None,
            seed: 0,
            sampler: Sampler::Cached,
            out: out.join("s.png"),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("must be 1 to 4096, got 0"), "{err}");
    // encode --limit 0
    let report = train::vqvae(&gpu, &vqvae_run(&out.join("run"), 1, 1e-3)).unwrap();
    let err = encode_error(&gpu, &report.checkpoint, 0, &out.join("codes.safetensors"));
    assert!(
        err.contains("image limit must be at least 1: a code file needs code grids"),
        "{err}"
    );
    assert!(!out.join("codes.safetensors").exists());
    // reconstruct --count 0
    let options = vqgpu::tasks::reconstruct::ReconstructOptions {
        checkpoint: report.checkpoint.clone(),
        data: DataSpec::default(),
        count: 0,
        out: out.join("r.png"),
    };
    let err = vqgpu::tasks::reconstruct::run(&gpu, &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be 1 to 4096, got 0"), "{err}");
    assert!(!out.join("r.png").exists());
    // --image-size for a dataset whose images have their own size, or a side shapes is not
    // drawn at; --data for the built-in dataset, which would be ignored
    let sized = |dataset: &str, side| DataSpec {
        dataset: dataset.into(),
        image_size: Some(side),
        ..DataSpec::default()
    };
    let with_dir = DataSpec {
        dir: Some(out.clone()),
        ..DataSpec::default()
    };
    for (spec, wanted) in [
        (
            sized("fashion-mnist", 64),
            &["--image-size applies to the folder and shapes datasets only"][..],
        ),
        (sized("shapes", 48), &["drawn at 32, 64 or 128"]),
        (with_dir, &["--data applies to", "shapes is built in"]),
    ] {
        let err = spec
            .open(vqgpu::data::Split::Test)
            .err()
            .unwrap()
            .to_string();
        assert!(wanted.iter().all(|w| err.contains(w)), "{err}");
    }
    // a NaN learning rate inside a checkpoint is the checkpoint's fault, not a flag's
    let mut ck = Checkpoint::load(&report.checkpoint).unwrap();
    ck.set("lr", "NaN");
    ck.save(&report.checkpoint).unwrap();
    let mut resume = resumed(&out.join("run"), 4);
    resume.run.resume = Some(out.join("run"));
    let err = train::vqvae(&gpu, &resume).unwrap_err().to_string();
    assert!(err.contains("damaged") && !err.contains("--lr"), "{err}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_prior_measures_no_nll_on_zero_test_grids() {
    use vqgpu::data::CodeGrids;
    use vqgpu::models::pixelcnn::PixelCnnConfig;
    use vqgpu::train::PriorTrainer;
    let gpu = gpu();
    let config = PixelCnnConfig {
        codes: 4,
        channels: 4,
        layers: 1,
        kernel: 3,
        head: 4,
        ..PixelCnnConfig::default()
    };
    let mut trainer = PriorTrainer::new(&gpu, config, 0, 1e-3, 2, [2, 2]).unwrap();
    let grids = CodeGrids {
        codes: vec![0.0, 1.0, 2.0, 3.0, 3.0, 2.0, 1.0, 0.0],
        len: 2,
        grid: [2, 2],
        codebook_size: 4,
        labels: None,
        classes: 0,
        condition: None,
    };
    let err = trainer.task.evaluate(&grids, 0).unwrap_err().to_string();
    assert!(err.contains("no test grids"), "{err}");
    trainer
        .task
        .evaluate_at_logs(std::sync::Arc::new(grids.clone()), 0)
        .unwrap();
    trainer.train_step_on(&grids).unwrap();
    let m = trainer.take_metrics().unwrap().unwrap();
    assert!(m.test_nll.is_nan(), "no test NLL is measured, not 0");
    assert!(trainer.task.evaluate(&grids, 2).unwrap() > 0.0);
}

#[test]
fn a_run_resumes_only_on_the_data_it_recorded() {
    let gpu = gpu();
    let out = temp_dir("dataset");
    let report = train::vqvae(&gpu, &vqvae_run(&out, 1, 1e-3)).unwrap();
    let ck = Checkpoint::load(&report.checkpoint).unwrap();
    assert_eq!(
        ck.meta("dataset").unwrap(),
        "shapes",
        "the checkpoint records its data"
    );
    // a run recorded as trained on other images is not continued on these
    let mut other = ck;
    other.set("dataset", "cifar10");
    other.save(&report.checkpoint).unwrap();
    let err = train::vqvae(&gpu, &resumed(&out, 2))
        .unwrap_err()
        .to_string();
    assert!(err.contains("was trained on cifar10, not shapes"), "{err}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn resuming_another_models_run_names_the_command_that_continues_it() {
    use vqgpu::models::autoencoder::{AeKind, AutoencoderConfig, Bottleneck, Recon};
    let gpu = gpu();
    let dir = temp_dir("other-model");
    let save = |meta: &[(&str, &str)]| {
        let mut ck = Checkpoint::default();
        ck.insert("w", &[1], vec![0.0]);
        for (key, value) in meta {
            ck.set(key, value);
        }
        ck.save(&dir.join(CHECKPOINT_FILE)).unwrap();
    };
    // a prior's run records codes as its data: named as a prior's run, not as other data
    save(&[
        ("format", "vqgpu.pixelcnn.1"),
        ("dataset", "codes of shapes"),
    ]);
    let err = train::vqvae(&gpu, &resumed(&dir, 2))
        .unwrap_err()
        .to_string();
    let path = dir.display();
    assert!(
        err.contains("holds a `train prior` run, not a `train vqvae` one")
            && err.contains(&format!("vqgpu train prior --codes FILE --resume {path}")),
        "{err}"
    );
    // another kind of autoencoder, and a classifier
    save(&[("format", "vqgpu.autoencoder.1"), ("kind", "dae")]);
    let vae = train::AeOptions {
        data: DataSpec::default(),
        run: resumed(&dir, 2).run,
        model: AutoencoderConfig {
            image_shape: [3, 32, 32],
            hidden: 32,
            res_hidden: 8,
            res_layers: 1,
            bottleneck: Bottleneck::Flat { dim: 2 },
            kind: AeKind::Variational {
                beta: 1.0,
                recon: Recon::Mse,
            },
        },
    };
    let err = train::autoencoder(&gpu, &vae).unwrap_err().to_string();
    assert!(
        err.contains("holds a `train dae` run, not a `train vae` one"),
        "{err}"
    );
    save(&[("format", "vqgpu.classifier.1"), ("dataset", "shapes")]);
    let err = train::vqvae2(&gpu, &resumed(&dir, 2))
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds a `train classifier` run"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
