//! The `vqgpu` command line: parses arguments, then calls into the library.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use vqgpu::bench::{self, BenchConfig};
use vqgpu::checkpoint::Checkpoint;
use vqgpu::data::{self, pixel_variance, CodeGrids, Split};
use vqgpu::gpu::{list_adapters, Backend};
use vqgpu::inference;
use vqgpu::models::autoencoder::{
    AeKind, Autoencoder, AutoencoderConfig, Bottleneck, Corruption, Recon,
};
use vqgpu::models::pixelcnn::PixelCnnConfig;
use vqgpu::models::quantizer::CodebookUpdate;
use vqgpu::models::vqvae::VqVaeConfig;
use vqgpu::ops::ema::EmaConfig;
use vqgpu::sample::Prior;
use vqgpu::train::{self, AeTrainer, PriorTrainer, TrainOptions, VqVaeTrainer};
use vqgpu::{Gpu, GpuOptions, Result};

#[derive(Parser)]
#[command(
    name = "vqgpu",
    version,
    about = "Hand-written WGSL GPU engine for VQ-VAEs and PixelCNN priors"
)]
struct Cli {
    #[command(flatten)]
    gpu: GpuArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct GpuArgs {
    /// Use the adapter whose name contains this text (default: env VQGPU_ADAPTER, else the best one)
    #[arg(long, global = true)]
    adapter: Option<String>,
    /// Graphics API: vulkan, metal, dx12 or gl (default: all but gl)
    #[arg(long, global = true)]
    backend: Option<String>,
}

impl GpuArgs {
    fn options(&self) -> Result<GpuOptions> {
        Ok(GpuOptions {
            adapter: self.adapter.clone(),
            backend: self.backend.as_deref().map(Backend::parse).transpose()?,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter with its backend, limits and features, and the one vqgpu would use
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
    /// Redraw the training curves (loss, reconstruction, perplexity) of a run from its metrics.csv
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
    /// Write a PNG grid of test images (top) above their VQ-VAE reconstructions (bottom)
    Reconstruct {
        /// VQ-VAE checkpoint (checkpoint.safetensors of a training run)
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Images to show
        #[arg(long, default_value_t = 32)]
        count: usize,
        /// Output PNG
        #[arg(long, default_value = "reconstructions.png")]
        out: PathBuf,
    },
    /// Draw new images: code grids from a PixelCNN prior, decoded by the VQ-VAE, as a PNG grid
    Sample(SampleArgs),
    /// The whole two-stage model in one command: train a VQ-VAE, encode the dataset, train the
    /// PixelCNN prior on the codes, sample. Defaults finish on `shapes` in minutes on a CPU driver
    Pipeline(Box<PipelineArgs>),
    /// For a VAE with a 2-D flat latent (`train vae --latent-dim 2`): the decoded manifold over a
    /// grid of z, and a scatter plot of the test images' posterior means coloured by label
    LatentMap {
        /// Checkpoint of a `train vae --latent-dim 2` run
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Grid side of the manifold (z from -2.5 to 2.5 standard deviations on both axes)
        #[arg(long, default_value_t = 16)]
        side: usize,
        /// Test images in the scatter plot
        #[arg(long, default_value_t = 5000)]
        limit: usize,
        /// Output directory (manifold.png, means.png)
        #[arg(long, default_value = "latent-map")]
        out: PathBuf,
    },
    /// Encode the train and test splits into code grids (i32 safetensors) for the prior
    Encode {
        /// VQ-VAE checkpoint (checkpoint.safetensors of a training run)
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Images per forward pass
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Encode at most this many images of each split
        #[arg(long, default_value_t = usize::MAX)]
        limit: usize,
        /// Output file
        #[arg(long, default_value = "codes.safetensors")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Test-set MSE and PSNR of an AE, denoising AE or VAE; for a VAE also -ELBO = NLL + KL
    Ae(EvalArgs),
    /// Test-set MSE, PSNR, code perplexity and share of the codebook used
    Vqvae(EvalArgs),
}

/// A trained model and the test images to evaluate it on.
#[derive(Args)]
struct EvalArgs {
    /// Checkpoint (checkpoint.safetensors of a training run)
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Images per forward pass
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Evaluate at most this many test images
    #[arg(long, default_value_t = usize::MAX)]
    limit: usize,
}

fn eval_vqvae(
    options: &GpuOptions,
    checkpoint: &std::path::Path,
    data: &DataArgs,
    batch: usize,
    limit: usize,
) -> Result<()> {
    let gpu = Gpu::new(options)?;
    let mut model = inference::load_vqvae(&gpu, checkpoint)?;
    let test = data.open(Split::Test)?;
    let r = inference::evaluate(&mut model, test.as_ref(), batch, limit)?;
    println!("adapter: {}", gpu.adapter_name());
    println!(
        "{} test images of {}: MSE {:.6} (pixels in [0,1]), PSNR {:.2} dB, perplexity {:.1}, codebook used {:.1}%",
        r.images,
        data.dataset,
        r.mse,
        r.psnr,
        r.perplexity,
        r.codes_used * 100.0
    );
    Ok(())
}

fn eval_autoencoder(
    options: &GpuOptions,
    checkpoint: &std::path::Path,
    data: &DataArgs,
    batch: usize,
    limit: usize,
) -> Result<()> {
    let gpu = Gpu::new(options)?;
    let ck = Checkpoint::load(checkpoint)?;
    let model = Autoencoder::from_checkpoint(&gpu, &ck)?;
    let variance: f32 = ck.meta_parse("variance")?;
    let test = data.open(Split::Test)?;
    let r = inference::evaluate_autoencoder(&model, test.as_ref(), batch, limit, variance)?;
    println!("adapter: {}", gpu.adapter_name());
    println!("{} on {} test images:", model.kind_name(), r.images);
    println!("  MSE (pixels in [0,1]): {:.6}", r.mse);
    println!("  PSNR:                  {:.2} dB", r.psnr);
    if let Some((nll, kl)) = r.nll_kl {
        println!(
            "  -ELBO:                 {:.2} nats per image = reconstruction {nll:.2} + KL {kl:.2}",
            nll + kl
        );
    }
    Ok(())
}

fn reconstruct(
    options: &GpuOptions,
    checkpoint: &std::path::Path,
    data: &DataArgs,
    count: usize,
    out: &std::path::Path,
) -> Result<()> {
    let gpu = Gpu::new(options)?;
    let mut model = inference::load_vqvae(&gpu, checkpoint)?;
    let test = data.open(Split::Test)?;
    let (originals, recons) = inference::reconstruct(&mut model, test.as_ref(), count)?;
    let columns = (originals.len() / test.image_shape().iter().product::<usize>()).min(16);
    train::save_comparison(out, &originals, &recons, test.image_shape(), columns)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Writes the code file; returns whether it holds labels (the dataset has classes).
fn encode(
    options: &GpuOptions,
    checkpoint: &std::path::Path,
    data: &DataArgs,
    batch: usize,
    limit: usize,
    out: &std::path::Path,
) -> Result<bool> {
    let gpu = Gpu::new(options)?;
    let mut model = inference::load_vqvae(&gpu, checkpoint)?;
    let mut codes = Checkpoint::default();
    for (name, split) in [("train", Split::Train), ("test", Split::Test)] {
        let images = data.open(split)?;
        eprintln!("encoding {} {name} images", images.len().min(limit));
        inference::encode_into(&mut codes, name, &mut model, images.as_ref(), batch, limit)?;
    }
    codes.set("format", data::CODES_FORMAT);
    codes.set("codebook_size", model.config.codebook_size);
    codes.set("dataset", &data.dataset);
    codes.set("vqvae_checkpoint", checkpoint.display());
    codes.save(out)?;
    println!("wrote {}", out.display());
    Ok(codes.metadata.contains_key("classes"))
}

#[derive(Subcommand)]
enum TrainCommand {
    /// Train a VQ-VAE (DESIGN.md section 6) on a dataset
    Vqvae(Box<TrainVqVaeArgs>),
    /// Train a Gated PixelCNN prior on code grids written by `vqgpu encode`
    Prior(Box<TrainPriorArgs>),
    /// Train a plain autoencoder on the VQ-VAE's encoder and decoder
    Ae(Box<TrainAeArgs>),
    /// Train a denoising autoencoder (--mask-prob or --noise-std corrupts the input on the GPU)
    Dae(Box<TrainAeArgs>),
    /// Train a VAE (reparameterization with GPU noise, KL term weighted by --beta)
    Vae(Box<TrainAeArgs>),
}

#[derive(Args)]
struct TrainAeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Total training steps
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Images per step
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Adam learning rate
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Seed of the initialisation, the data order and the GPU noise
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (metrics.csv, PNG grids, curves.png, checkpoint.safetensors) [default: the
    /// --resume directory, else runs/<ae|dae|vae>]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run saved in this directory (its model and optimizer settings are used)
    #[arg(long)]
    resume: Option<PathBuf>,
    #[command(flatten)]
    schedule: ScheduleArgs,
    #[command(flatten)]
    trunk: TrunkArgs,
    /// Spatial bottleneck: latent channels of the H/4 x W/4 code
    #[arg(long, default_value_t = 8)]
    latent_channels: usize,
    /// Flat bottleneck instead: a vector of this size per image (through Linear layers)
    #[arg(long)]
    latent_dim: Option<usize>,
    /// dae: probability that a pixel is blacked out
    #[arg(long)]
    mask_prob: Option<f32>,
    /// dae: standard deviation of added Gaussian noise, in [0, 1] pixel units
    #[arg(long)]
    noise_std: Option<f32>,
    /// vae: weight of the KL term
    #[arg(long, default_value_t = 1.0)]
    beta: f32,
    /// vae: reconstruction likelihood, mse (Gaussian) or bce (Bernoulli)
    #[arg(long, default_value = "mse")]
    recon: String,
}

impl TrainAeArgs {
    fn kind(&self, name: &str) -> Result<AeKind> {
        let bad = |m: &str| Err(vqgpu::Error::InvalidArgument(m.into()));
        match (name, self.mask_prob, self.noise_std) {
            ("dae", Some(p), None) => Ok(AeKind::Denoising(Corruption::Mask(p))),
            ("dae", None, Some(s)) => Ok(AeKind::Denoising(Corruption::Gaussian(s))),
            ("dae", None, None) => Ok(AeKind::Denoising(Corruption::Mask(0.25))),
            ("dae", Some(_), Some(_)) => bad("give --mask-prob or --noise-std, not both"),
            (_, Some(_), _) | (_, _, Some(_)) => {
                bad("--mask-prob and --noise-std are for `train dae`")
            }
            ("vae", ..) => Ok(AeKind::Variational {
                beta: self.beta,
                recon: match self.recon.as_str() {
                    "mse" => Recon::Mse,
                    "bce" => Recon::Bce,
                    other => {
                        return Err(vqgpu::Error::InvalidArgument(format!(
                            "--recon must be mse or bce, got {other:?}"
                        )))
                    }
                },
            }),
            _ => Ok(AeKind::Plain),
        }
    }
}

fn train_autoencoder(options: &GpuOptions, args: &TrainAeArgs, name: &str) -> Result<()> {
    let gpu = Gpu::new(options)?;
    let data = args.data.open(Split::Train)?;
    let out = output_dir(&args.out, &args.resume, name);
    let mut trainer = match &args.resume {
        Some(dir) => {
            let ck = Checkpoint::load(&dir.join(train::CHECKPOINT_FILE))?;
            let t = AeTrainer::from_checkpoint(&gpu, &ck)?;
            if t.model.kind_name() != name {
                return Err(vqgpu::Error::InvalidArgument(format!(
                    "{} holds a {} run, not {name}",
                    dir.display(),
                    t.model.kind_name()
                )));
            }
            eprintln!("resuming {} at step {}", dir.display(), t.step);
            t
        }
        None => {
            let config = AutoencoderConfig {
                image_shape: data.image_shape(),
                hidden: args.trunk.hidden,
                res_hidden: args.trunk.res_hidden,
                res_layers: args.trunk.res_layers,
                bottleneck: match args.latent_dim {
                    Some(dim) => Bottleneck::Flat { dim },
                    None => Bottleneck::Spatial {
                        channels: args.latent_channels,
                    },
                },
                kind: args.kind(name)?,
            };
            let variance = pixel_variance(data.as_ref(), 10_000) as f32;
            AeTrainer::new(&gpu, config, args.seed, args.lr, args.batch, variance)?
        }
    };
    if data.image_shape() != trainer.model.config.image_shape {
        return Err(vqgpu::Error::InvalidArgument(format!(
            "dataset images are {:?} but the checkpoint was trained on {:?}",
            data.image_shape(),
            trainer.model.config.image_shape
        )));
    }
    check_steps(args.steps, trainer.step)?;
    let opts = TrainOptions {
        steps: args.steps,
        batch: trainer.batch,
        lr: trainer.adam.hyper.lr,
        seed: trainer.seed,
        out: out.clone(),
        log_every: args.schedule.log_every,
        sample_every: args.schedule.sample_every,
        save_every: args.schedule.save_every,
    };
    eprintln!(
        "adapter: {}; {name}, {} parameters; {} steps of {} images from {} into {}",
        gpu.adapter_name(),
        trainer.model.params.count(),
        opts.steps,
        opts.batch,
        args.data.dataset,
        out.display()
    );
    let bar = progress_bar(trainer.step, opts.steps);
    let result = train::run(&mut trainer, data, &opts, &mut |m, rate| {
        let vae = match (m.recon_nll, m.kl, m.neg_elbo()) {
            (Some(r), Some(k), Some(e)) => {
                format!(" | -ELBO {e:.1} = recon {r:.1} + KL {k:.2} nats/image")
            }
            _ => String::new(),
        };
        let line = format!(
            "step {} loss {:.4} recon MSE {:.5}{vae} | {:.0} img/s",
            m.step, m.loss, m.recon_mse, rate
        );
        show_progress(&bar, m.step, line);
    });
    bar.finish();
    result?;
    eprintln!("done: {}", out.display());
    Ok(())
}

#[derive(Args, Clone)]
struct TrainPriorArgs {
    /// Code file written by `vqgpu encode` (train and test splits)
    #[arg(long)]
    codes: PathBuf,
    /// Total training steps
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    /// Code grids per step
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Adam learning rate
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Seed of the initialisation and the data order
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (metrics.csv, curves.png, checkpoint.safetensors) [default: the --resume
    /// directory, else runs/prior]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run saved in this directory (its model and optimizer settings are used)
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Read back the train NLL and measure the test NLL every N steps
    #[arg(long, default_value_t = 100)]
    log_every: u64,
    /// Write a checkpoint every N steps
    #[arg(long, default_value_t = 500)]
    save_every: u64,
    /// Test grids used for the NLL at each log (all of them at the end)
    #[arg(long, default_value_t = 1000)]
    eval_grids: usize,
    /// Channels of the vertical and horizontal stacks
    #[arg(long, default_value_t = 64)]
    channels: usize,
    /// Gated residual layers
    #[arg(long, default_value_t = 10)]
    layers: usize,
    /// Side of the masked kernels (3, 5 or 7)
    #[arg(long, default_value_t = 3)]
    kernel: usize,
    /// Channels of the output head's hidden 1x1 conv
    #[arg(long, default_value_t = 256)]
    head: usize,
    /// Condition on the class labels stored in the code file (a learned per-class bias)
    #[arg(long)]
    conditional: bool,
}

fn train_prior(options: &GpuOptions, args: &TrainPriorArgs) -> Result<()> {
    let gpu = Gpu::new(options)?;
    let file = Checkpoint::load(&args.codes)?;
    let train = CodeGrids::from_checkpoint(&file, "train")?;
    let test = CodeGrids::from_checkpoint(&file, "test")?;
    let mut trainer = match &args.resume {
        Some(dir) => {
            let ck = Checkpoint::load(&dir.join(train::CHECKPOINT_FILE))?;
            let t = PriorTrainer::from_checkpoint(&gpu, &ck)?;
            eprintln!("resuming {} at step {}", dir.display(), t.step);
            t
        }
        None => {
            if args.conditional && train.labels.is_none() {
                return Err(vqgpu::Error::InvalidArgument(format!(
                    "--conditional needs labels, and {} has none",
                    args.codes.display()
                )));
            }
            let config = PixelCnnConfig {
                codes: train.codebook_size,
                channels: args.channels,
                layers: args.layers,
                kernel: args.kernel,
                head: args.head,
                classes: if args.conditional { train.classes } else { 0 },
            };
            PriorTrainer::new(&gpu, config, args.seed, args.lr, args.batch, train.grid)?
        }
    };
    check_steps(args.steps, trainer.step)?;
    let opts = TrainOptions {
        steps: args.steps,
        batch: trainer.batch,
        lr: trainer.adam.hyper.lr,
        seed: trainer.seed,
        out: output_dir(&args.out, &args.resume, "prior"),
        log_every: args.log_every,
        sample_every: 0,
        save_every: args.save_every,
    };
    let k = train.codebook_size as f64;
    let unigram = train.unigram_entropy();
    eprintln!(
        "adapter: {}; {} parameters; {} train / {} test grids of {}x{} codes (K = {}{}); {} steps of {} into {}",
        gpu.adapter_name(),
        trainer.model.params.count(),
        train.len,
        test.len,
        train.grid[0],
        train.grid[1],
        train.codebook_size,
        match trainer.model.config.classes {
            0 => String::new(),
            c => format!(", conditional on {c} classes"),
        },
        opts.steps,
        opts.batch,
        opts.out.display()
    );
    eprintln!(
        "baselines: uniform log K = {:.4} nats ({:.3} bits); unigram entropy of the train codes = {unigram:.4} nats ({:.3} bits)",
        k.ln(),
        train::bits(k.ln()),
        train::bits(unigram)
    );
    let bar = progress_bar(trainer.step, opts.steps);
    let result = train::run_prior(
        &mut trainer,
        &train,
        &test,
        args.eval_grids,
        &opts,
        &mut |m, rate| {
            let line = format!(
            "step {} train NLL {:.4} nats ({:.3} bits) test {:.4} nats ({:.3} bits) | {:.0} grids/s",
            m.step,
            m.train_nll,
            train::bits(m.train_nll),
            m.test_nll,
            train::bits(m.test_nll),
            rate
        );
            show_progress(&bar, m.step, line);
        },
    );
    bar.finish();
    result?;
    let test_nll = trainer.evaluate(&test, usize::MAX)?;
    println!(
        "test NLL over all {} grids: {test_nll:.4} nats = {:.3} bits per code (uniform {:.3} bits, unigram {:.3} bits)",
        test.len,
        train::bits(test_nll),
        train::bits(k.ln()),
        train::bits(unigram)
    );
    eprintln!("done: {}", opts.out.display());
    Ok(())
}

#[derive(Args, Clone)]
struct SampleArgs {
    /// VQ-VAE checkpoint whose codes trained the prior
    #[arg(long, requires = "prior", conflicts_with = "vae")]
    vqvae: Option<PathBuf>,
    /// Prior checkpoint (checkpoint.safetensors of `train prior`)
    #[arg(long, requires = "vqvae")]
    prior: Option<PathBuf>,
    /// Instead: a VAE checkpoint (`train vae`); decodes z ~ N(0, I)
    #[arg(long, required_unless_present = "vqvae")]
    vae: Option<PathBuf>,
    /// Images to draw (a conditional prior without --class: rounded up to whole rows, one per class)
    #[arg(long, default_value_t = 64)]
    count: usize,
    /// Softmax temperature (0: the most likely code at every step)
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Class of every sample (conditional priors; default: one row per class)
    #[arg(long)]
    class: Option<u32>,
    /// Seed of the sampling RNG
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output PNG
    #[arg(long, default_value = "samples.png")]
    out: PathBuf,
}

fn sample(options: &GpuOptions, args: &SampleArgs) -> Result<()> {
    let (Some(vqvae), Some(prior)) = (&args.vqvae, &args.prior) else {
        return sample_vae(options, args);
    };
    let gpu = Gpu::new(options)?;
    let vqvae = inference::load_vqvae(&gpu, vqvae)?;
    let prior = Prior::load(&gpu, prior)?;
    if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
        return Err(vqgpu::Error::InvalidArgument(format!(
            "--temperature must be a number >= 0, got {}",
            args.temperature
        )));
    }
    let classes = prior.model.config.classes;
    // `sample_codes` checks the classes against the prior
    let (count, labels, columns) = match (classes, args.class) {
        (_, Some(class)) => (args.count, Some(vec![class; args.count]), 8.min(args.count)),
        (0, None) => (args.count, None, 8.min(args.count)),
        (c, None) => {
            let per_class = args.count.div_ceil(c).max(1);
            let labels: Vec<u32> = (0..c * per_class).map(|i| (i / per_class) as u32).collect();
            (labels.len(), Some(labels), per_class)
        }
    };
    let start = std::time::Instant::now();
    let codes = prior.sample_codes(count, labels.as_deref(), args.temperature, args.seed)?;
    let images = vqgpu::sample::decode(&vqvae, &prior, &codes)?;
    let seconds = start.elapsed().as_secs_f64();
    let [h, w] = prior.grid;
    let shape = [vqvae.config.in_channels, h * 4, w * 4];
    vqgpu::grid::save_grid(&args.out, &images, shape, columns)?;
    println!(
        "adapter: {}; {count} samples of {}x{} codes in {seconds:.2} s ({:.1} samples/s, {} forward passes); wrote {}",
        gpu.adapter_name(),
        h,
        w,
        count as f64 / seconds,
        h * w,
        args.out.display()
    );
    Ok(())
}

/// `sample --vae`: decodes `--count` draws of z ~ N(0, I) (keyed by `--seed`) into a PNG grid.
fn sample_vae(options: &GpuOptions, args: &SampleArgs) -> Result<()> {
    let path = args.vae.as_ref().ok_or_else(|| {
        vqgpu::Error::InvalidArgument("give --vae, or --vqvae with --prior".into())
    })?;
    let gpu = Gpu::new(options)?;
    let model = Autoencoder::from_checkpoint(&gpu, &Checkpoint::load(path)?)?;
    if !model.config.variational() {
        return Err(vqgpu::Error::InvalidArgument(format!(
            "{} holds a {}, not a VAE: only a VAE has a prior to sample from",
            path.display(),
            model.kind_name()
        )));
    }
    if args.count == 0 {
        return Err(vqgpu::Error::InvalidArgument(
            "--count must be at least 1".into(),
        ));
    }
    let _no_grad = vqgpu::autograd::no_grad();
    let z = vqgpu::ops::latent::normal(&gpu, &model.latent_shape(args.count), args.seed, 0.0, 1.0);
    let images = model.decode(&z).to_vec()?;
    vqgpu::grid::save_grid(&args.out, &images, model.config.image_shape, 8)?;
    println!(
        "adapter: {}; {} samples from N(0, I); wrote {}",
        gpu.adapter_name(),
        args.count,
        args.out.display()
    );
    Ok(())
}

fn latent_map(
    options: &GpuOptions,
    checkpoint: &std::path::Path,
    data: &DataArgs,
    side: usize,
    limit: usize,
    out: &std::path::Path,
) -> Result<()> {
    let gpu = Gpu::new(options)?;
    let model = Autoencoder::from_checkpoint(&gpu, &Checkpoint::load(checkpoint)?)?;
    if !model.config.variational() || model.config.bottleneck != (Bottleneck::Flat { dim: 2 }) {
        return Err(vqgpu::Error::InvalidArgument(format!(
            "{} is not a VAE with a 2-D flat latent (train vae --latent-dim 2)",
            checkpoint.display()
        )));
    }
    if side < 2 {
        return Err(vqgpu::Error::InvalidArgument(
            "--side must be at least 2".into(),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| vqgpu::Error::io(out, e))?;
    // the manifold: z on a regular grid, rows from high to low z2, columns from low to high z1
    let at = |i: usize| -2.5 + 5.0 * i as f32 / (side - 1) as f32;
    let z: Vec<f32> = (0..side * side)
        .flat_map(|k| [at(k % side), at(side - 1 - k / side)])
        .collect();
    let images = {
        let _no_grad = vqgpu::autograd::no_grad();
        let z = vqgpu::Tensor::from_slice(&gpu, &[side * side, 2], &z)?;
        model.decode(&z).to_vec()?
    };
    let manifold = out.join("manifold.png");
    vqgpu::grid::save_grid(&manifold, &images, model.config.image_shape, side)?;
    let test = data.open(Split::Test)?;
    let (means, labels) = inference::posterior_means(&model, test.as_ref(), 256, limit)?;
    let points: Vec<(f64, f64)> = means.iter().map(|m| (m[0] as f64, m[1] as f64)).collect();
    let scatter = out.join("means.png");
    vqgpu::plot::save_scatter(
        &scatter,
        "posterior means of test images (z1, z2)",
        &points,
        &labels,
    )?;
    println!("wrote {} and {}", manifold.display(), scatter.display());
    Ok(())
}

#[derive(Args)]
struct PipelineArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Output directory: vqvae/, codes.safetensors, prior/, samples.png
    #[arg(long, default_value = "runs/pipeline")]
    out: PathBuf,
    /// Seed of both models, the data order and the samples
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// VQ-VAE training steps
    #[arg(long, default_value_t = 700)]
    vqvae_steps: u64,
    /// VQ-VAE trunk channels
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    /// VQ-VAE codebook size K
    #[arg(long, default_value_t = 64)]
    codebook_size: usize,
    /// VQ-VAE code dimension D
    #[arg(long, default_value_t = 16)]
    code_dim: usize,
    /// Prior training steps
    #[arg(long, default_value_t = 600)]
    prior_steps: u64,
    /// Prior channels
    #[arg(long, default_value_t = 32)]
    channels: usize,
    /// Prior gated layers
    #[arg(long, default_value_t = 5)]
    layers: usize,
    /// Images of each split encoded for the prior
    #[arg(long, default_value_t = 4000)]
    encode_limit: usize,
    /// Images to sample
    #[arg(long, default_value_t = 64)]
    count: usize,
    /// Sampling temperature
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
}

fn pipeline(options: &GpuOptions, args: &PipelineArgs) -> Result<()> {
    let start = std::time::Instant::now();
    let stage = |n: usize, what: &str| {
        eprintln!(
            "== [{n}/4] {what} ({:.0} s elapsed)",
            start.elapsed().as_secs_f64()
        )
    };
    let vqvae_dir = args.out.join("vqvae");
    let codes = args.out.join("codes.safetensors");
    let prior_dir = args.out.join("prior");
    stage(1, "train the VQ-VAE");
    let vqvae = TrainVqVaeArgs {
        data: args.data.clone(),
        steps: args.vqvae_steps,
        batch: 32,
        lr: 2e-3,
        seed: args.seed,
        out: Some(vqvae_dir.clone()),
        resume: None,
        schedule: ScheduleArgs {
            log_every: 50,
            sample_every: args.vqvae_steps,
            save_every: 500,
        },
        trunk: TrunkArgs {
            hidden: args.hidden,
            res_hidden: 16,
            res_layers: 1,
        },
        codebook_size: args.codebook_size,
        code_dim: args.code_dim,
        beta: 0.25,
        quantizer: "ema".into(),
        restart_dead_codes: 20,
    };
    train_vqvae(options, &vqvae)?;
    let vqvae_checkpoint = vqvae_dir.join(train::CHECKPOINT_FILE);
    stage(2, "encode the dataset into code grids");
    let labelled = encode(
        options,
        &vqvae_checkpoint,
        &args.data,
        128,
        args.encode_limit,
        &codes,
    )?;
    stage(3, "train the PixelCNN prior");
    let prior = TrainPriorArgs {
        codes,
        steps: args.prior_steps,
        batch: 16,
        lr: 2e-3,
        seed: args.seed,
        out: Some(prior_dir.clone()),
        resume: None,
        log_every: 100,
        save_every: 500,
        eval_grids: 250,
        channels: args.channels,
        layers: args.layers,
        kernel: 3,
        head: 64,
        conditional: labelled,
    };
    train_prior(options, &prior)?;
    stage(4, "sample");
    sample(
        options,
        &SampleArgs {
            vqvae: Some(vqvae_checkpoint),
            prior: Some(prior_dir.join(train::CHECKPOINT_FILE)),
            vae: None,
            count: args.count,
            temperature: args.temperature,
            class: None,
            seed: args.seed,
            out: args.out.join("samples.png"),
        },
    )?;
    eprintln!(
        "pipeline done in {:.0} s: {}",
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

/// How often an image-model run logs, writes grids and saves.
#[derive(Args, Clone)]
struct ScheduleArgs {
    /// Read back and print metrics every N steps
    #[arg(long, default_value_t = 50)]
    log_every: u64,
    /// Write a grid of originals above reconstructions every N steps
    #[arg(long, default_value_t = 500)]
    sample_every: u64,
    /// Write a checkpoint every N steps
    #[arg(long, default_value_t = 500)]
    save_every: u64,
}

/// The sizes of the conv encoder / decoder (DESIGN.md section 6).
#[derive(Args, Clone)]
struct TrunkArgs {
    /// Trunk channels
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Channels inside a residual layer
    #[arg(long, default_value_t = 32)]
    res_hidden: usize,
    /// Residual layers per stack
    #[arg(long, default_value_t = 2)]
    res_layers: usize,
}

/// Which images to use.
#[derive(Args, Clone)]
struct DataArgs {
    /// Dataset: shapes (built in), mnist, fashion-mnist, cifar10 or folder
    #[arg(long, default_value = "shapes")]
    dataset: String,
    /// Data directory (fashion-mnist defaults to /usr/share/datasets/fashion-mnist)
    #[arg(long)]
    data: Option<PathBuf>,
    /// Side of the images of the folder dataset (a multiple of 4)
    #[arg(long, default_value_t = 32)]
    image_size: usize,
}

impl DataArgs {
    fn open(&self, split: Split) -> Result<std::sync::Arc<dyn data::Dataset>> {
        data::open(&self.dataset, self.data.as_deref(), split, self.image_size)
    }
}

#[derive(Args)]
struct TrainVqVaeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Total training steps
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Images per step
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Adam learning rate
    #[arg(long, default_value_t = 3e-4)]
    lr: f32,
    /// Seed of the initialisation and the data order
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (metrics.csv, PNG grids, checkpoint.safetensors) [default: the --resume
    /// directory, else runs/vqvae]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run saved in this directory (its model and optimizer settings are used)
    #[arg(long)]
    resume: Option<PathBuf>,
    #[command(flatten)]
    schedule: ScheduleArgs,
    #[command(flatten)]
    trunk: TrunkArgs,
    /// Codebook size K
    #[arg(long, default_value_t = 512)]
    codebook_size: usize,
    /// Code dimension D
    #[arg(long, default_value_t = 64)]
    code_dim: usize,
    /// Commitment weight
    #[arg(long, default_value_t = 0.25)]
    beta: f32,
    /// Codebook update: ema (moving averages) or loss (codebook loss)
    #[arg(long, default_value = "ema")]
    quantizer: String,
    /// With EMA: restart codes unused for this many steps (0: never)
    #[arg(long, default_value_t = 20)]
    restart_dead_codes: u32,
}

impl TrainVqVaeArgs {
    fn model_config(&self, in_channels: usize) -> Result<VqVaeConfig> {
        let update = match self.quantizer.as_str() {
            "ema" => CodebookUpdate::Ema {
                config: EmaConfig::default(),
                restart_after: Some(self.restart_dead_codes).filter(|&n| n > 0),
            },
            "loss" => CodebookUpdate::Loss,
            other => {
                return Err(vqgpu::Error::InvalidArgument(format!(
                    "--quantizer must be ema or loss, got {other:?}"
                )))
            }
        };
        Ok(VqVaeConfig {
            in_channels,
            hidden: self.trunk.hidden,
            res_hidden: self.trunk.res_hidden,
            res_layers: self.trunk.res_layers,
            codebook_size: self.codebook_size,
            code_dim: self.code_dim,
            beta: self.beta,
            update,
        })
    }
}

fn train_vqvae(options: &GpuOptions, args: &TrainVqVaeArgs) -> Result<()> {
    let gpu = Gpu::new(options)?;
    let data = args.data.open(Split::Train)?;
    let mut trainer = match &args.resume {
        Some(dir) => {
            let ck = Checkpoint::load(&dir.join(train::CHECKPOINT_FILE))?;
            let t = VqVaeTrainer::from_checkpoint(&gpu, &ck)?;
            eprintln!("resuming {} at step {}", dir.display(), t.step);
            t
        }
        None => {
            let variance = pixel_variance(data.as_ref(), 10_000) as f32;
            let config = args.model_config(data.image_shape()[0])?;
            VqVaeTrainer::new(
                &gpu,
                config,
                args.seed,
                args.lr,
                args.batch,
                data.image_shape(),
                variance,
            )?
        }
    };
    if data.image_shape() != trainer.image_shape {
        return Err(vqgpu::Error::InvalidArgument(format!(
            "dataset images are {:?} but the checkpoint was trained on {:?}",
            data.image_shape(),
            trainer.image_shape
        )));
    }
    check_steps(args.steps, trainer.step)?;
    let opts = TrainOptions {
        steps: args.steps,
        batch: trainer.batch,
        lr: trainer.adam.hyper.lr,
        seed: trainer.seed,
        out: output_dir(&args.out, &args.resume, "vqvae"),
        log_every: args.schedule.log_every,
        sample_every: args.schedule.sample_every,
        save_every: args.schedule.save_every,
    };
    eprintln!(
        "adapter: {}; {} parameters; {} steps of {} images from {} into {}",
        gpu.adapter_name(),
        trainer.model.params.count(),
        opts.steps,
        opts.batch,
        args.data.dataset,
        opts.out.display()
    );
    let bar = progress_bar(trainer.step, opts.steps);
    let result = train::run(&mut trainer, data, &opts, &mut |m, rate| {
        let line = format!(
            "step {} loss {:.4} recon {:.5} perplexity {:.1} used {:.0}% restarts {} | {:.0} img/s",
            m.step,
            m.loss,
            m.recon_mse,
            m.perplexity,
            m.codes_used * 100.0,
            m.restarts,
            rate
        );
        show_progress(&bar, m.step, line);
    });
    bar.finish();
    result?;
    eprintln!("done: {}", opts.out.display());
    Ok(())
}

/// Where a training run writes: `--out`, else the run it resumes, else `runs/<name>`.
fn output_dir(out: &Option<PathBuf>, resume: &Option<PathBuf>, name: &str) -> PathBuf {
    out.clone()
        .or_else(|| resume.clone())
        .unwrap_or_else(|| PathBuf::from("runs").join(name))
}

/// Refuses `--steps 0` and a `--steps` the resumed checkpoint has already reached.
fn check_steps(steps: u64, reached: u64) -> Result<()> {
    if steps == 0 {
        return Err(vqgpu::Error::InvalidArgument(
            "--steps must be at least 1".into(),
        ));
    }
    if reached >= steps {
        return Err(vqgpu::Error::InvalidArgument(format!(
            "the checkpoint is already at step {reached}; pass a larger --steps to continue"
        )));
    }
    Ok(())
}

/// Moves the bar to `step` with `line` as its message, or prints `line` when there is no terminal.
fn show_progress(bar: &ProgressBar, step: u64, line: String) {
    bar.set_position(step);
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.set_message(line);
    }
}

fn progress_bar(position: u64, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total).with_position(position);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

#[derive(Subcommand)]
enum BenchCommand {
    /// GEMM and the VQ-VAE convolutions (forward, input gradient, weight gradient)
    Kernels {
        /// Batch size of the convolution shapes
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Calls per timed repeat
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// Timed repeats (the median is reported)
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Square GEMM sizes, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "512,1024,2048")]
        gemm: Vec<usize>,
    },
    /// Nearest-code search: the fused kernel against a one-thread-per-row kernel, GFLOP/s (2NKD)
    Quantizer {
        /// Encoder vectors N, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "4096,65536")]
        n: Vec<usize>,
        /// Codebook sizes K, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "512,8192")]
        k: Vec<usize>,
        /// Code dimensions D, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "64,256")]
        d: Vec<usize>,
        /// Calls per timed repeat
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Timed repeats (the median is reported)
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// VQ-VAE training throughput (images/s) and the time split of a step
    Vqvae {
        /// Images per step
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Timed steps
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Trunk channels
        #[arg(long, default_value_t = 128)]
        hidden: usize,
        /// Channels inside a residual layer
        #[arg(long, default_value_t = 32)]
        res_hidden: usize,
        /// Codebook size K
        #[arg(long, default_value_t = 512)]
        codebook_size: usize,
        /// Code dimension D
        #[arg(long, default_value_t = 64)]
        code_dim: usize,
    },
}

fn adapter_line(gpu: &Gpu) -> String {
    let info = &gpu.report().info;
    format!(
        "adapter: {} ({:?}, driver {} {}); clock: {:?}",
        info.name,
        info.backend,
        info.driver,
        info.driver_info,
        bench::clock(gpu)
    )
}

fn bench_quantizer(
    options: &GpuOptions,
    n: &[usize],
    k: &[usize],
    d: &[usize],
    cfg: BenchConfig,
) -> Result<()> {
    let all = n.iter().chain(k).chain(d).chain([&cfg.iters, &cfg.repeats]);
    if all.clone().any(|&v| v == 0)
        || d.iter().any(|&v| v > vqgpu::ops::vq::MAX_CODE_DIM)
        || k.iter().any(|&v| v > vqgpu::ops::vq::MAX_CODES)
    {
        return Err(vqgpu::Error::InvalidArgument(format!(
            "sizes must be positive, D at most {}, K at most {}",
            vqgpu::ops::vq::MAX_CODE_DIM,
            vqgpu::ops::vq::MAX_CODES
        )));
    }
    let gpu = Gpu::new(options)?;
    println!(
        "{}; {} calls x {} repeats (median)",
        adapter_line(&gpu),
        cfg.iters,
        cfg.repeats
    );
    println!(
        "{:>6} {:>6} {:>4} {:>11} {:>9} {:>11} {:>9} {:>8}  check",
        "N", "K", "D", "fused ms", "GFLOP/s", "naive ms", "GFLOP/s", "speed-up"
    );
    let shapes: Vec<(usize, usize, usize)> = n
        .iter()
        .flat_map(|&n| {
            k.iter()
                .flat_map(move |&k| d.iter().map(move |&d| (n, k, d)))
        })
        .collect();
    bench::quantizer(&gpu, &shapes, &cfg, &mut |r| {
        let check = match (r.fused_correct, r.naive_agrees) {
            (true, true) => "fused = CPU reference, naive = fused",
            (true, false) => {
                "fused = CPU reference; NAIVE DIFFERS (software drivers cut its long loop)"
            }
            (false, _) => "FUSED WRONG vs CPU reference",
        };
        println!(
            "{:>6} {:>6} {:>4} {:>11.3} {:>9.1} {:>11.3} {:>9.1} {:>7.1}x  {check}",
            r.n,
            r.k,
            r.d,
            r.fused * 1e3,
            r.gflops(r.fused),
            r.naive * 1e3,
            r.gflops(r.naive),
            r.naive / r.fused
        )
    })?;
    Ok(())
}

fn bench_vqvae(
    options: &GpuOptions,
    batch: usize,
    steps: usize,
    config: VqVaeConfig,
) -> Result<()> {
    let gpu = Gpu::new(options)?;
    println!(
        "{}; batch {batch}, {steps} steps, hidden {}, K {}, D {}",
        adapter_line(&gpu),
        config.hidden,
        config.codebook_size,
        config.code_dim
    );
    let r = bench::vqvae(&gpu, config, batch, steps)?;
    println!(
        "training: {:.1} images/s ({:.2} ms per step)",
        r.images_per_s,
        batch as f64 / r.images_per_s * 1e3
    );
    let total: f64 = r.phases.iter().sum();
    for (name, t) in bench::PHASES.iter().zip(r.phases) {
        println!(
            "  {name:<16} {:>9.3} ms  {:>5.1}%",
            t * 1e3,
            t / total * 100.0
        );
    }
    Ok(())
}

fn info(options: &GpuOptions) -> Result<()> {
    let adapters = list_adapters(options);
    if adapters.is_empty() {
        println!("no adapters found");
    }
    for (i, a) in adapters.iter().enumerate() {
        println!("[{i}] {a}");
    }
    let gpu = Gpu::new(options)?;
    println!("selected: {}", gpu.adapter_name());
    Ok(())
}

fn bench_kernels(options: &GpuOptions, cfg: BenchConfig) -> Result<()> {
    for (name, value) in [
        ("--batch", cfg.batch),
        ("--iters", cfg.iters),
        ("--repeats", cfg.repeats),
    ] {
        if value == 0 {
            return Err(vqgpu::Error::InvalidArgument(format!(
                "{name} must be at least 1"
            )));
        }
    }
    if cfg.gemm_sizes.contains(&0) {
        return Err(vqgpu::Error::InvalidArgument(
            "GEMM sizes must be at least 1".into(),
        ));
    }
    let gpu = Gpu::new(options)?;
    let info = &gpu.report().info;
    println!(
        "adapter: {} ({:?}, driver {} {}); clock: {:?}; batch {}, {} calls x {} repeats (median)",
        info.name,
        info.backend,
        info.driver,
        info.driver_info,
        bench::clock(&gpu),
        cfg.batch,
        cfg.iters,
        cfg.repeats
    );
    println!("{:<44} {:>12} {:>10}", "kernel", "ms/call", "GFLOP/s");
    bench::kernels(&gpu, &cfg, &mut |row| {
        println!(
            "{:<44} {:>12.4} {:>10.1}",
            row.name,
            row.seconds * 1e3,
            row.gflops()
        )
    })?;
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let options = cli.gpu.options()?;
    match cli.command {
        Command::Info => info(&options),
        Command::Plot { run, out } => {
            let out = out.unwrap_or_else(|| run.join("curves.png"));
            train::plot_metrics(&run.join("metrics.csv"), &out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Eval { what } => match what {
            EvalCommand::Vqvae(a) => eval_vqvae(&options, &a.checkpoint, &a.data, a.batch, a.limit),
            EvalCommand::Ae(a) => {
                eval_autoencoder(&options, &a.checkpoint, &a.data, a.batch, a.limit)
            }
        },
        Command::Reconstruct {
            checkpoint,
            data,
            count,
            out,
        } => reconstruct(&options, &checkpoint, &data, count, &out),
        Command::Encode {
            checkpoint,
            data,
            batch,
            limit,
            out,
        } => encode(&options, &checkpoint, &data, batch, limit, &out).map(|_| ()),
        Command::Sample(args) => sample(&options, &args),
        Command::LatentMap {
            checkpoint,
            data,
            side,
            limit,
            out,
        } => latent_map(&options, &checkpoint, &data, side, limit, &out),
        Command::Pipeline(args) => pipeline(&options, &args),
        Command::Train { what } => match what {
            TrainCommand::Vqvae(args) => train_vqvae(&options, &args),
            TrainCommand::Prior(args) => train_prior(&options, &args),
            TrainCommand::Ae(args) => train_autoencoder(&options, &args, "ae"),
            TrainCommand::Dae(args) => train_autoencoder(&options, &args, "dae"),
            TrainCommand::Vae(args) => train_autoencoder(&options, &args, "vae"),
        },
        Command::Bench { what } => match what {
            BenchCommand::Kernels {
                batch,
                iters,
                repeats,
                gemm,
            } => bench_kernels(
                &options,
                BenchConfig {
                    batch,
                    iters,
                    repeats,
                    gemm_sizes: gemm,
                },
            ),
            BenchCommand::Quantizer {
                n,
                k,
                d,
                iters,
                repeats,
            } => bench_quantizer(
                &options,
                &n,
                &k,
                &d,
                BenchConfig {
                    iters,
                    repeats,
                    ..BenchConfig::default()
                },
            ),
            BenchCommand::Vqvae {
                batch,
                steps,
                hidden,
                res_hidden,
                codebook_size,
                code_dim,
            } => {
                let config = VqVaeConfig {
                    hidden,
                    res_hidden,
                    codebook_size,
                    code_dim,
                    ..VqVaeConfig::default()
                };
                bench_vqvae(&options, batch, steps, config)
            }
        },
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_run_writes_into_its_own_directory_unless_out_is_given() {
        let dir = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            output_dir(&None, &None, "vqvae"),
            PathBuf::from("runs/vqvae")
        );
        assert_eq!(
            output_dir(&None, &dir("old"), "vqvae"),
            PathBuf::from("old")
        );
        assert_eq!(
            output_dir(&dir("new"), &dir("old"), "prior"),
            PathBuf::from("new")
        );
        assert_eq!(output_dir(&dir("new"), &None, "vae"), PathBuf::from("new"));
    }

    #[test]
    fn train_commands_parse_without_out() {
        let cli = Cli::try_parse_from(["vqgpu", "train", "vqvae", "--resume", "runs/a"]).unwrap();
        let Command::Train {
            what: TrainCommand::Vqvae(args),
        } = cli.command
        else {
            panic!("parsed as another command");
        };
        assert_eq!(args.out, None);
        assert_eq!(args.resume, Some(PathBuf::from("runs/a")));
    }
}
