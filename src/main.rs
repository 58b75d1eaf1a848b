//! The `vqgpu` command line: the commands and one `match` that hands each to its library task.
//! The argument groups, their defaults and the flag names of errors are in `cli.rs`.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use cli::{
    BenchKernelsArgs, BenchPriorArgs, BenchQuantizerArgs, BenchVqVaeArgs, EncodeArgs, EvalArgs,
    EvalClassifierArgs, EvalPriorArgs, EvalSamplesArgs, LatentMapArgs, PipelineArgs,
    ReconstructArgs, SampleArgs, TrainAeArgs, TrainClassifierArgs, TrainPriorArgs, TrainVqVaeArgs,
};
use vqgpu::gpu::Backend;
use vqgpu::tasks::{
    bench, encode, eval, info, latent_map, pipeline, reconstruct, sample, score, train,
};
use vqgpu::{Error, Gpu, GpuOptions, Result};

/// Counts heap allocations for the host figures of `bench vqvae --profile`.
#[global_allocator]
static ALLOCATOR: vqgpu::heap::CountingAllocator = vqgpu::heap::CountingAllocator;

#[derive(Parser)]
#[command(
    name = "vqgpu",
    version,
    about = "Hand-written WGSL GPU engine for VQ-VAEs and PixelCNN priors"
)]
struct Cli {
    /// Use the adapter whose name contains this text (default: env VQGPU_ADAPTER, else the best one)
    #[arg(long, global = true, help_heading = "Adapter (any command)")]
    adapter: Option<String>,
    /// Graphics API: vulkan, metal, dx12 or gl (default: all but gl)
    #[arg(long, global = true, help_heading = "Adapter (any command)")]
    backend: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter with its backend, limits and features, and the one vqgpu would use with
    /// its kernel set (gpu, or cpu on a software driver; env VQGPU_KERNELS=gpu|cpu forces one)
    Info,
    /// Run microbenchmarks
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Train a model
    Train {
        #[command(subcommand)]
        what: TrainCommand,
    },
    /// Redraw the training curves of a run from its metrics.csv
    Plot {
        /// Run directory holding metrics.csv
        #[arg(long)]
        run: PathBuf,
        /// Output PNG (default: RUN/curves.png)
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Evaluate a trained model on a test set
    Eval {
        #[command(subcommand)]
        what: EvalCommand,
    },
    /// Write a PNG grid of test images (top) above their VQ-VAE or VQ-VAE-2 reconstructions
    /// (bottom)
    Reconstruct(ReconstructArgs),
    /// Draw new images: code grids from a PixelCNN prior, decoded by the VQ-VAE, as a PNG grid
    Sample(SampleArgs),
    /// The whole two-stage model in one command: train a VQ-VAE, encode the dataset, train the
    /// PixelCNN prior on the codes, sample (`--model vqvae2`: a VQ-VAE-2 with a prior per level).
    /// Defaults finish on `shapes` in minutes on a CPU driver
    Pipeline(Box<PipelineArgs>),
    /// For a VAE with a 2-D flat latent (`train vae --latent-dim 2`): the decoded manifold over a
    /// grid of z, and a scatter plot of the test images' posterior means coloured by label
    LatentMap(LatentMapArgs),
    /// Encode the train and test splits into code grids (i32 safetensors) for the prior
    Encode(EncodeArgs),
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Test-set MSE and PSNR of an AE, denoising AE or VAE; for a VAE also -ELBO = NLL + KL
    Ae(EvalArgs),
    /// Test-set MSE, PSNR, code perplexity and share of the codebook used (of each level for a
    /// VQ-VAE-2 checkpoint)
    #[command(visible_alias = "vqvae2")]
    Vqvae(EvalArgs),
    /// Test NLL of a PixelCNN prior over the code file it was trained on, in nats and bits per
    /// code, beside the uniform and unigram baselines
    Prior(EvalPriorArgs),
    /// Test accuracy of an image classifier
    Classifier(EvalClassifierArgs),
    /// Sample quality: Fréchet distance of samples (and of reconstructions, and of real training
    /// images) to real test images in a classifier's features; class agreement for a
    /// conditional prior
    Samples(Box<EvalSamplesArgs>),
}

#[derive(Subcommand)]
enum TrainCommand {
    /// Train a VQ-VAE (the reference model of docs/design.md) on a dataset
    Vqvae(Box<TrainVqVaeArgs>),
    /// Train a two-level VQ-VAE-2 (top codes at H/8, bottom codes at H/4; the model flags size
    /// each level) on images whose sides are multiples of 8
    Vqvae2(Box<TrainVqVaeArgs>),
    /// Train a Gated PixelCNN prior (PixelSNAIL-style, with attention, over a VQ-VAE-2's top
    /// codes) on code grids written by `vqgpu encode`
    Prior(Box<TrainPriorArgs>),
    /// Train a plain autoencoder on the VQ-VAE's encoder and decoder
    Ae(Box<TrainAeArgs>),
    /// Train a denoising autoencoder (--mask-prob or --noise-std corrupts the input on the GPU)
    Dae(Box<TrainAeArgs>),
    /// Train a VAE (reparameterization with GPU noise, KL term weighted by --beta)
    Vae(Box<TrainAeArgs>),
    /// Train an image classifier on a labelled dataset (the feature network of `eval samples`)
    Classifier(Box<TrainClassifierArgs>),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// GEMM and the VQ-VAE convolutions (forward, input gradient, weight gradient), each beside the GEMM of its M x N x K
    Kernels(BenchKernelsArgs),
    /// Nearest-code search: the fused kernel against a one-thread-per-row kernel and the GEMM of its N x K x D, GFLOP/s (2NKD)
    Quantizer(BenchQuantizerArgs),
    /// VQ-VAE training throughput (images/s) and the time split of a step
    Vqvae(BenchVqVaeArgs),
    /// PixelCNN prior (with --attention-every, the PixelSNAIL-style one): training throughput
    /// (grids/s) and sampling speed (samples/s)
    Prior(BenchPriorArgs),
}

fn run(cli: Cli) -> Result<()> {
    let options = GpuOptions {
        adapter: cli.adapter,
        backend: cli.backend.as_deref().map(Backend::parse).transpose()?,
        ..GpuOptions::default()
    };
    let gpu = || Gpu::new(&options);
    match cli.command {
        Command::Info => info::run(&options).map(drop),
        Command::Plot { run, out } => {
            let out = out.unwrap_or_else(|| run.join(vqgpu::train::CURVES_FILE));
            vqgpu::train::plot_metrics(&run.join(vqgpu::train::METRICS_FILE), &out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Eval { what } => match what {
            EvalCommand::Vqvae(a) => eval::vqvae(&gpu()?, &a.options()).map(drop),
            EvalCommand::Ae(a) => eval::autoencoder(&gpu()?, &a.options()).map(drop),
            EvalCommand::Prior(a) => eval::prior(&gpu()?, &a.options()).map(drop),
            EvalCommand::Classifier(a) => {
                score::classifier_accuracy(&gpu()?, &a.options()).map(drop)
            }
            EvalCommand::Samples(a) => match a.task() {
                cli::SamplesTask::Drawn(o) => score::score_samples(&gpu()?, &o).map(drop),
                cli::SamplesTask::Grid(o) => score::score_grid(&gpu()?, &o).map(drop),
            },
        },
        Command::Reconstruct(a) => reconstruct::run(&gpu()?, &a.options()).map(drop),
        Command::Encode(a) => encode::run(&gpu()?, &a.options()).map(drop),
        Command::Sample(a) => match (a.prior_options(), a.vae_options()) {
            (Some(prior), _) => sample::run(&gpu()?, &prior).map(drop),
            (None, Some(vae)) => sample::vae(&gpu()?, &vae).map(drop),
            (None, None) => Err(Error::InvalidArgument(
                "give --vae, or --vqvae with --prior".into(),
            )),
        },
        Command::LatentMap(a) => latent_map::run(&gpu()?, &a.options()).map(drop),
        Command::Pipeline(a) => pipeline::run(&gpu()?, &a.options()).map(drop),
        Command::Train { what } => match what {
            TrainCommand::Vqvae(a) => train::vqvae(&gpu()?, &a.options()).map(drop),
            TrainCommand::Vqvae2(a) => train::vqvae2(&gpu()?, &a.options()).map(drop),
            TrainCommand::Prior(a) => train::prior(&gpu()?, &a.options()).map(drop),
            TrainCommand::Ae(a) => train::autoencoder(&gpu()?, &a.options("ae")?).map(drop),
            TrainCommand::Dae(a) => train::autoencoder(&gpu()?, &a.options("dae")?).map(drop),
            TrainCommand::Vae(a) => train::autoencoder(&gpu()?, &a.options("vae")?).map(drop),
            TrainCommand::Classifier(a) => train::classifier(&gpu()?, &a.options()).map(drop),
        },
        Command::Bench { what } => match what {
            BenchCommand::Kernels(a) => bench::run_kernels(&gpu()?, &a.options()).map(drop),
            BenchCommand::Quantizer(a) => {
                let gpu = gpu()?;
                bench::run_quantizer(&gpu, &a.options(gpu.report().info.device_type)).map(drop)
            }
            BenchCommand::Vqvae(a) => bench::run_vqvae(&gpu()?, &a.options()).map(drop),
            BenchCommand::Prior(a) => bench::run_prior(&gpu()?, &a.options()).map(drop),
        },
    }
}

/// Parses the command line, with the defaults that differ by command.
fn parse(args: Vec<String>) -> std::result::Result<Cli, clap::Error> {
    let matches = cli::command_line(Cli::command(), &args).try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// Parses the command line and, for a resumed training run, checks it against the checkpoint and
/// adds the dataset the checkpoint records (`cli::resume_flags`).
fn parse_checked(args: Vec<String>) -> Result<Cli> {
    let command = cli::command_line(Cli::command(), &args);
    let matches = command
        .clone()
        .try_get_matches_from(&args)
        .unwrap_or_else(|e| e.exit());
    let extra = cli::resume_flags(&command, &matches)?;
    let parsed = if extra.is_empty() {
        Cli::from_arg_matches(&matches)
    } else {
        parse(args.into_iter().chain(extra).collect())
    };
    Ok(parsed.unwrap_or_else(|e| e.exit()))
}

/// Gives Mesa's window-system probe the private runtime directory it looks for when the
/// environment has none (a console without a desktop session, a container, CI), so that it does
/// not print `error: XDG_RUNTIME_DIR is invalid ...` when the device opens. No window is ever
/// opened and nothing is written there.
#[cfg(unix)]
fn ensure_runtime_dir() {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir()) {
        return;
    }
    // SAFETY: getuid has no preconditions and cannot fail
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("vqgpu-runtime-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    // only a directory of this user's, private to it, will do
    let private = std::fs::symlink_metadata(&dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0);
    if private {
        // main has not started a thread yet: nothing else reads the environment now
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}

#[cfg(not(unix))]
fn ensure_runtime_dir() {}

/// Lets output into a closed pipe (`vqgpu info | head -1`) end the process the way it ends other
/// command-line tools, silently by SIGPIPE, instead of a panic with a backtrace at the next line
/// printed. Files vqgpu writes are written atomically, so none is left half-written.
#[cfg(unix)]
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: setting a signal's disposition to the default has no preconditions; no thread has
    // started yet
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

#[cfg(not(unix))]
fn end_quietly_on_a_closed_pipe() {}

/// The exit status of a process ended by Ctrl-C (128 + SIGINT), as shells report it.
const INTERRUPTED: u8 = 130;

/// Ctrl-C during training stops the run after its current step, saved so that `--resume`
/// continues it; anywhere else, or a second time, it ends the process at once, as it would
/// without this handler (every file vqgpu writes is written atomically, so none is left
/// half-written).
fn stop_training_on_ctrl_c() {
    let handler = || {
        if vqgpu::train::interrupt::request_stop() {
            eprintln!(
                "\nstopping after this step and saving the run (Ctrl-C again to quit at once)"
            );
        } else {
            std::process::exit(INTERRUPTED.into());
        }
    };
    // without a handler Ctrl-C still ends the process, only without the save
    let _ = ctrlc::set_handler(handler);
}

fn main() -> ExitCode {
    ensure_runtime_dir();
    end_quietly_on_a_closed_pipe();
    stop_training_on_ctrl_c();
    let (result, pipeline) = match parse_checked(std::env::args().collect()) {
        Ok(cli) => {
            let pipeline = matches!(cli.command, Command::Pipeline(_));
            (run(cli), pipeline)
        }
        Err(e) => (Err(e), false),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ vqgpu::Error::Interrupted { .. }) => {
            eprintln!("{e}");
            if pipeline {
                eprintln!("the pipeline's later stages did not run: the same `pipeline` command with --resume continues it");
            }
            ExitCode::from(INTERRUPTED)
        }
        Err(e) => {
            eprintln!("error: {}", cli::message(&e, pipeline));
            ExitCode::FAILURE
        }
    }
}
