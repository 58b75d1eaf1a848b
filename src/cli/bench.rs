//! The arguments of the `bench` commands and their conversion into the benchmarks' options.

use clap::Args;

use vqgpu::models::pixelcnn::PixelCnnConfig;
use vqgpu::tasks::bench;

use super::groups::{PriorModelArgs, SamplerArg, TimingArgs, VqVaeArgs};

/// `bench kernels`.
#[derive(Args)]
pub struct BenchKernelsArgs {
    /// Batch size of the convolution shapes
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[command(flatten)]
    timing: TimingArgs,
    /// Square GEMM sizes, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "512,1024,2048")]
    gemm: Vec<usize>,
}

impl BenchKernelsArgs {
    pub fn options(&self) -> bench::BenchConfig {
        bench::BenchConfig {
            batch: self.batch,
            gemm_sizes: self.gemm.clone(),
            ..self.timing.config()
        }
    }
}

/// `bench quantizer`.
#[derive(Args)]
pub struct BenchQuantizerArgs {
    /// Encoder vectors N, comma-separated [default: 4096,65536; on a CPU adapter 2048,8192]
    #[arg(long, value_delimiter = ',')]
    n: Option<Vec<usize>>,
    /// Codebook sizes K, comma-separated [default: 512,8192; on a CPU adapter 512]
    #[arg(long, value_delimiter = ',')]
    k: Option<Vec<usize>>,
    /// Code dimensions D, comma-separated [default: 64,256; on a CPU adapter 64]
    #[arg(long, value_delimiter = ',')]
    d: Option<Vec<usize>>,
    #[command(flatten)]
    timing: TimingArgs,
}

impl BenchQuantizerArgs {
    /// The options, with the default grid of `adapter` for each size not given.
    pub fn options(&self, adapter: wgpu::DeviceType) -> bench::QuantizerOptions {
        let [n, k, d] = bench::default_quantizer_grid(adapter);
        bench::QuantizerOptions {
            n: self.n.clone().unwrap_or(n),
            k: self.k.clone().unwrap_or(k),
            d: self.d.clone().unwrap_or(d),
            timing: self.timing.config(),
        }
    }
}

/// `bench prior`.
#[derive(Args)]
pub struct BenchPriorArgs {
    /// Code grids per training step
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Timed training steps per run
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Timed training runs of --steps steps each (the median run is reported, with the range)
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Side of the square code grid (8: the grid of a 32x32 image under the reference VQ-VAE)
    #[arg(long, default_value_t = 8)]
    grid: usize,
    /// Codebook size K (classes of the prior's output)
    #[arg(long, default_value_t = 512)]
    codebook_size: usize,
    /// Grids drawn at once when timing sampling
    #[arg(long, default_value_t = 16)]
    samples: usize,
    /// Sides of the square code grids sampling is timed on
    #[arg(long, value_delimiter = ',', default_value = "8,16,32")]
    sample_grids: Vec<usize>,
    /// Samplers timed (the full sampler first on each grid size: the speed-ups are against it)
    #[arg(long, value_enum, value_delimiter = ',', default_value = "full,cached")]
    samplers: Vec<SamplerArg>,
    /// Time the full sampler on only this many positions of each grid and scale to the whole grid
    /// (each of its positions is one identical forward pass over the grid, so the figure is the
    /// same up to noise; whole 32x32 grids take hours on a CPU driver); 0: whole grids
    #[arg(long, default_value_t = 32)]
    full_positions: usize,
    /// Also list every kernel launch of one training step with its GPU time, by kernel and by
    /// layer, and the host-side cost of recording a step
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    model: PriorModelArgs,
}

impl BenchPriorArgs {
    pub fn options(&self) -> bench::PriorBenchOptions {
        bench::PriorBenchOptions {
            batch: self.batch,
            steps: self.steps,
            repeats: self.repeats,
            grid: [self.grid, self.grid],
            samples: self.samples,
            sample_sides: self.sample_grids.clone(),
            samplers: self.samplers.iter().map(|&s| s.into()).collect(),
            full_positions: (self.full_positions > 0).then_some(self.full_positions),
            model: PixelCnnConfig {
                codes: self.codebook_size,
                ..self.model.config(0)
            },
            profile: self.profile,
        }
    }
}

/// `bench vqvae`.
#[derive(Args)]
pub struct BenchVqVaeArgs {
    /// Images per step
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Timed steps per run
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Timed runs of --steps steps each (the median run is reported, with the range)
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Also list every kernel launch of one step with its GPU time, by kernel and by layer, and
    /// the host-side cost of recording a step
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    model: VqVaeArgs,
}

impl BenchVqVaeArgs {
    pub fn options(&self) -> bench::VqVaeBenchOptions {
        bench::VqVaeBenchOptions {
            batch: self.batch,
            steps: self.steps,
            repeats: self.repeats,
            model: self.model.config(),
            profile: self.profile,
        }
    }
}
