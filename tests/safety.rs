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
    assert!(
        err.contains("diverged") || err.contains("the loss became"),
        "{err}"
    );
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
    let err = encode::run(
        &gpu,
        &EncodeOptions {
            checkpoint: report.checkpoint.clone(),
            data: DataSpec::default(),
            batch: 8,
            limit: 8,
            out: out.join(".").join(CHECKPOINT_FILE),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("this command's input"), "{err}");
    assert_eq!(std::fs::read(&report.checkpoint).unwrap(), before);
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
