//! The command line as parsed: each command's defaults, presets and the flags that override them.

use crate::*;
use vqgpu::models::pixelcnn::{PixelCnnConfig, TOP_ATTENTION_EVERY};
use vqgpu::models::vqvae::VqVaeConfig;
use vqgpu::nn::LrSchedule;
use vqgpu::tasks::pipeline::{PipelineOptions, Preset};

fn parsed(args: &[&str]) -> Command {
    parse(args.iter().map(|a| a.to_string()).collect())
        .unwrap()
        .command
}

#[test]
fn train_commands_parse_without_out() {
    let Command::Train {
        what: TrainCommand::Vqvae(args),
    } = parsed(&["vqgpu", "train", "vqvae", "--resume", "runs/a"])
    else {
        panic!("parsed as another command");
    };
    let options = args.options();
    assert_eq!(options.run.out, None);
    assert_eq!(options.run.resume, Some(PathBuf::from("runs/a")));
}

#[test]
fn a_resumed_run_refuses_contradicting_flags_and_keeps_its_dataset() {
    let dir = std::env::temp_dir().join(format!("vqgpu-cli-resume-{}", std::process::id()));
    let mut ck = vqgpu::io::checkpoint::Checkpoint::default();
    ck.insert("w", &[1], vec![0.0]);
    for (key, value) in [
        ("hidden", "128"),
        ("lr", "0.002"),
        ("batch", "32"),
        ("restart_after", "20"),
        ("dataset", "fashion-mnist"),
    ] {
        ck.set(key, value);
    }
    ck.save(&dir.join(vqgpu::train::CHECKPOINT_FILE)).unwrap();
    let dir_arg = dir.display().to_string();
    let resume = |extra: &[&str]| {
        let mut args: Vec<String> = ["vqgpu", "train", "vqvae", "--resume", &dir_arg]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        parse_checked(args).map(|cli| cli.command)
    };
    let refused = |extra: &[&str], wanted: &str| {
        let err = resume(extra).err().expect("refused").to_string();
        assert!(err.contains(wanted), "{extra:?}: {err}");
    };
    refused(&["--hidden", "64"], "--hidden 64 contradicts the run");
    refused(&["--lr", "0.5"], "--lr 0.5 contradicts");
    // a checkpoint that records no schedule trained at a constant rate
    refused(
        &["--lr-schedule", "cosine"],
        "--lr-schedule cosine contradicts",
    );
    refused(
        &["--restart-dead-codes", "5"],
        "--restart-dead-codes 5 contradicts",
    );
    refused(
        &["--code-dim", "16"],
        "--code-dim cannot be changed when resuming",
    );
    // the same values, however written, and the flags a run may change, are fine
    let Ok(Command::Train {
        what: TrainCommand::Vqvae(args),
    }) = resume(&[
        "--hidden",
        "128",
        "--lr",
        "2e-3",
        "--lr-schedule",
        "constant",
        "--steps",
        "5000",
        "--save-every",
        "7",
    ])
    else {
        panic!("refused a resume that contradicts nothing");
    };
    // the dataset the checkpoint records, not the default
    assert_eq!(args.options().data.dataset, "fashion-mnist");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn another_models_run_lends_no_flags_to_a_resume() {
    let dir = std::env::temp_dir().join(format!("vqgpu-cli-kind-{}", std::process::id()));
    let dir_arg = dir.display().to_string();
    let mut ck = vqgpu::io::checkpoint::Checkpoint::default();
    ck.insert("w", &[1], vec![0.0]);
    ck.set("format", "vqgpu.pixelcnn.1");
    ck.set("dataset", "codes of shapes");
    ck.set("hidden", "64");
    ck.save(&dir.join(vqgpu::train::CHECKPOINT_FILE)).unwrap();
    // a prior's run: its data is no image dataset and its settings are not a VQ-VAE's, so the
    // command line takes neither (the library refuses the run, naming `train prior`)
    let args = [
        "vqgpu", "train", "vqvae", "--resume", &dir_arg, "--hidden", "128",
    ];
    let Ok(Command::Train {
        what: TrainCommand::Vqvae(args),
    }) = parse_checked(args.iter().map(|s| s.to_string()).collect()).map(|cli| cli.command)
    else {
        panic!("the command line refused or misread the resume");
    };
    assert_eq!(args.options().data.dataset, "shapes");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_gpu_preset_sets_the_pipeline_defaults_and_flags_still_override_them() {
    let options = |args: &[&str]| {
        let Command::Pipeline(p) = parsed(args) else {
            panic!("parsed as another command");
        };
        p.options()
    };
    let gpu = PipelineOptions::preset(Preset::Gpu);
    for args in [
        &["vqgpu", "pipeline", "--preset", "gpu"][..],
        &["vqgpu", "pipeline", "--preset=gpu"],
    ] {
        let got = options(args);
        assert_eq!((&got.vqvae, &got.prior), (&gpu.vqvae, &gpu.prior));
        assert_eq!(
            (&got.vqvae, &got.prior),
            (
                &VqVaeConfig::default(),
                &PixelCnnConfig {
                    attention_every: TOP_ATTENTION_EVERY,
                    ..PixelCnnConfig::default()
                }
            )
        );
        assert_eq!(
            (
                got.vqvae_steps,
                got.vqvae_batch,
                got.prior_steps,
                got.prior_batch
            ),
            (
                gpu.vqvae_steps,
                gpu.vqvae_batch,
                gpu.prior_steps,
                gpu.prior_batch
            )
        );
        assert_eq!(
            (got.encode_limit, got.eval_grids, got.lr, got.lr_schedule),
            (gpu.encode_limit, gpu.eval_grids, gpu.lr, gpu.lr_schedule)
        );
        assert_eq!(
            (got.prior_lr, got.prior_lr_schedule),
            (gpu.prior_lr, gpu.prior_lr_schedule)
        );
    }
    let got = options(&[
        "vqgpu",
        "pipeline",
        "--preset",
        "gpu",
        "--vqvae-hidden",
        "64",
        "--prior-steps",
        "7",
    ]);
    assert_eq!((got.vqvae.hidden, got.prior_steps), (64, 7));
    assert_eq!(got.vqvae.codebook_size, gpu.vqvae.codebook_size);
    // the cpu preset is the default, and another command's flag named pipeline is no preset
    let cpu = options(&["vqgpu", "pipeline", "--preset", "cpu"]);
    assert_eq!(cpu.vqvae, PipelineOptions::default().vqvae);
    assert_eq!(cpu.vqvae_steps, PipelineOptions::default().vqvae_steps);
    assert!(parse(
        ["vqgpu", "pipeline", "--preset", "tpu"]
            .map(String::from)
            .to_vec()
    )
    .is_err());
}

#[test]
fn defaults_differ_by_command_from_one_declaration() {
    let Command::Pipeline(p) = parsed(&["vqgpu", "pipeline"]) else {
        panic!("parsed as another command");
    };
    let (got, want) = (p.options(), PipelineOptions::default());
    assert_eq!((&got.vqvae, &got.prior), (&want.vqvae, &want.prior));
    assert_eq!(
        (got.vqvae_batch, got.prior_batch, got.lr, got.lr_schedule),
        (
            want.vqvae_batch,
            want.prior_batch,
            want.lr,
            want.lr_schedule
        )
    );
    assert_eq!(
        (got.prior_lr, got.prior_lr_schedule),
        (want.prior_lr, want.prior_lr_schedule)
    );
    // the pipeline's model flags say which model they size
    let Command::Pipeline(p) = parsed(&[
        "vqgpu",
        "pipeline",
        "--vqvae-hidden",
        "48",
        "--prior-channels",
        "24",
        "--vqvae-batch",
        "8",
        "--lr",
        "1e-3",
        "--lr-schedule",
        "cosine",
        "--prior-lr",
        "5e-4",
        "--prior-lr-schedule",
        "constant",
    ]) else {
        panic!("parsed as another command");
    };
    let got = p.options();
    assert_eq!((got.vqvae.hidden, got.prior.channels), (48, 24));
    assert_eq!((got.vqvae_batch, got.lr), (8, 1e-3));
    assert_eq!(got.lr_schedule, LrSchedule::Cosine);
    assert_eq!(
        (got.prior_lr, got.prior_lr_schedule),
        (5e-4, LrSchedule::Constant)
    );
    assert!(parse(
        ["vqgpu", "pipeline", "--hidden", "48"]
            .map(String::from)
            .to_vec()
    )
    .is_err());
    let Command::Train {
        what: TrainCommand::Prior(prior),
    } = parsed(&["vqgpu", "train", "prior", "--codes", "c"])
    else {
        panic!("parsed as another command");
    };
    let prior = prior.options();
    assert_eq!((prior.run.steps, prior.run.lr), (2000, 1e-3));
    assert_eq!(prior.run.lr_schedule, LrSchedule::Constant);
    assert_eq!(prior.model, PixelCnnConfig::default());
    let Command::Train {
        what: TrainCommand::Vqvae(vqvae),
    } = parsed(&["vqgpu", "train", "vqvae", "--lr-schedule", "cosine"])
    else {
        panic!("parsed as another command");
    };
    let vqvae = vqvae.options();
    assert_eq!((vqvae.run.steps, vqvae.run.lr), (1000, 1e-3));
    assert_eq!(vqvae.run.lr_schedule, LrSchedule::Cosine);
    assert_eq!(vqvae.model, VqVaeConfig::default());
}

#[test]
fn a_top_codes_prior_attends_unless_told_otherwise() {
    let attention = |args: &[&str]| {
        let args = [&["vqgpu", "train", "prior", "--codes", "c"][..], args].concat();
        let Command::Train {
            what: TrainCommand::Prior(prior),
        } = parsed(&args)
        else {
            panic!("parsed as another command");
        };
        let model = prior.options().model;
        (model.attention_every, model.heads)
    };
    assert_eq!(attention(&[]), (0, 4));
    assert_eq!(attention(&["--level", "top"]), (TOP_ATTENTION_EVERY, 4));
    assert_eq!(
        attention(&["--level", "top", "--attention-every", "0"]),
        (0, 4)
    );
    assert_eq!(
        attention(&["--attention-every", "3", "--heads", "8"]),
        (3, 8)
    );
    let Command::Pipeline(p) = parsed(&["vqgpu", "pipeline", "--prior-attention-every", "1"])
    else {
        panic!("parsed as another command");
    };
    assert_eq!(p.options().prior.attention_every, 1);
}

#[test]
fn bench_prior_times_the_full_sampler_on_32_positions_unless_told_otherwise() {
    let full_positions = |args: &[&str]| {
        let Command::Bench {
            what: BenchCommand::Prior(a),
        } = parsed(&[&["vqgpu", "bench", "prior"], args].concat())
        else {
            panic!("parsed as another command");
        };
        a.options().full_positions
    };
    assert_eq!(full_positions(&[]), Some(32));
    assert_eq!(full_positions(&["--full-positions", "100"]), Some(100));
    assert_eq!(
        full_positions(&["--full-positions", "0"]),
        None,
        "whole grids"
    );
}

#[test]
fn only_models_that_reconstruct_take_recon_every() {
    let args = |what: &str| {
        ["vqgpu", "train", what, "--recon-every", "5"]
            .map(String::from)
            .to_vec()
    };
    assert!(parse(args("vae")).is_ok());
    let err = parse(args("classifier"))
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("--recon-every"), "{err}");
}

#[test]
fn bench_quantizer_takes_a_small_grid_on_a_cpu_adapter_unless_told_otherwise() {
    let options = |args: &[&str], adapter| {
        let Command::Bench {
            what: BenchCommand::Quantizer(a),
        } = parsed(&[&["vqgpu", "bench", "quantizer"], args].concat())
        else {
            panic!("parsed as another command");
        };
        let o = a.options(adapter);
        (o.n, o.k, o.d)
    };
    let (cpu, gpu) = (wgpu::DeviceType::Cpu, wgpu::DeviceType::DiscreteGpu);
    assert_eq!(
        options(&[], gpu),
        (vec![4096, 65536], vec![512, 8192], vec![64, 256])
    );
    assert_eq!(options(&[], cpu), (vec![2048, 8192], vec![512], vec![64]));
    assert_eq!(
        options(&["--k", "1024,2048"], cpu),
        (vec![2048, 8192], vec![1024, 2048], vec![64])
    );
}

#[test]
fn eval_samples_takes_draws_of_samples_only() {
    let args = |extra: &[&str]| {
        let mut all = vec!["vqgpu", "eval", "samples", "--classifier", "c.safetensors"];
        all.extend(extra);
        all.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let drawn = args(&[
        "--vqvae", "v", "--prior", "p", "--draws", "3", "--seed", "4",
    ]);
    let Command::Eval {
        what: EvalCommand::Samples(samples),
    } = parse(drawn).unwrap().command
    else {
        panic!("parsed as another command");
    };
    let cli::SamplesTask::Drawn(options) = samples.task() else {
        panic!("a grid task");
    };
    assert_eq!((options.draws, options.seed), (3, 4));
    let err = parse(args(&["--grid", "g.png", "--draws", "2"]))
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("--draws"), "{err}");
}
