//! The `vqgpu` command line: parses arguments, then calls into the library.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use vqgpu::bench::{self, BenchConfig};
use vqgpu::gpu::{list_adapters, Backend};
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
