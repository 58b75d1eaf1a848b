//! Kernel microbenchmarks: GEMM and the convolutions of the reference VQ-VAE (DESIGN.md section 6).
//! Each row is the median over repeats of the time per call of many calls recorded back to back.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::autograd;
use crate::error::Result;
use crate::gpu::timing::{Clock, GpuTimer};
use crate::gpu::Gpu;
use crate::models::vqvae::VqVaeConfig;
use crate::ops::conv::{self, Conv2dOptions, ConvTranspose2dOptions};
use crate::ops::{gemm, vq};
use crate::tensor::Tensor;
use crate::train::VqVaeTrainer;

/// How long and how large to benchmark.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Batch size of the convolution shapes.
    pub batch: usize,
    /// Calls recorded per timed repeat.
    pub iters: usize,
    /// Timed repeats; the median is reported.
    pub repeats: usize,
    /// Square GEMM sizes.
    pub gemm_sizes: Vec<usize>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            batch: 32,
            iters: 20,
            repeats: 5,
            gemm_sizes: vec![512, 1024, 2048],
        }
    }
}

/// One measured kernel.
#[derive(Clone, Debug)]
pub struct BenchRow {
    /// What ran.
    pub name: String,
    /// Median seconds per call.
    pub seconds: f64,
    /// Floating-point operations per call.
    pub flops: f64,
}

impl BenchRow {
    /// Achieved GFLOP/s.
    pub fn gflops(&self) -> f64 {
        self.flops / self.seconds / 1e9
    }
}

fn random(gpu: &Gpu, rng: &mut ChaCha8Rng, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_slice(gpu, shape, &data)
}

/// Times `launch` (which records one call) and returns the median seconds per call.
fn time_calls(gpu: &Gpu, cfg: &BenchConfig, launch: &dyn Fn()) -> Result<f64> {
    launch(); // compile pipelines and fill the buffer pool
    gpu.sync()?;
    let mut timer = GpuTimer::new(gpu);
    let mut samples = Vec::with_capacity(cfg.repeats);
    for _ in 0..cfg.repeats.max(1) {
        timer.start(gpu)?;
        for _ in 0..cfg.iters.max(1) {
            launch();
        }
        samples.push(timer.stop(gpu)? / cfg.iters.max(1) as f64);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// A convolution layer of the reference VQ-VAE at 32x32 input.
struct ConvCase {
    name: &'static str,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    /// Input spatial size.
    size: usize,
    transposed: bool,
}

const VQVAE_CONVS: [ConvCase; 9] = [
    ConvCase {
        name: "enc conv 3->64 k4 s2 32x32",
        cin: 3,
        cout: 64,
        k: 4,
        stride: 2,
        pad: 1,
        size: 32,
        transposed: false,
    },
    ConvCase {
        name: "enc conv 64->128 k4 s2 16x16",
        cin: 64,
        cout: 128,
        k: 4,
        stride: 2,
        pad: 1,
        size: 16,
        transposed: false,
    },
    ConvCase {
        name: "enc conv 128->128 k3 8x8",
        cin: 128,
        cout: 128,
        k: 3,
        stride: 1,
        pad: 1,
        size: 8,
        transposed: false,
    },
    ConvCase {
        name: "res conv 128->32 k3 8x8",
        cin: 128,
        cout: 32,
        k: 3,
        stride: 1,
        pad: 1,
        size: 8,
        transposed: false,
    },
    ConvCase {
        name: "res conv 32->128 k1 8x8",
        cin: 32,
        cout: 128,
        k: 1,
        stride: 1,
        pad: 0,
        size: 8,
        transposed: false,
    },
    ConvCase {
        name: "pre-quant conv 128->64 k1 8x8",
        cin: 128,
        cout: 64,
        k: 1,
        stride: 1,
        pad: 0,
        size: 8,
        transposed: false,
    },
    ConvCase {
        name: "dec convT 64->128 k3 8x8",
        cin: 64,
        cout: 128,
        k: 3,
        stride: 1,
        pad: 1,
        size: 8,
        transposed: true,
    },
    ConvCase {
        name: "dec convT 128->64 k4 s2 8x8",
        cin: 128,
        cout: 64,
        k: 4,
        stride: 2,
        pad: 1,
        size: 8,
        transposed: true,
    },
    ConvCase {
        name: "dec convT 64->3 k4 s2 16x16",
        cin: 64,
        cout: 3,
        k: 4,
        stride: 2,
        pad: 1,
        size: 16,
        transposed: true,
    },
];

/// Runs every kernel benchmark, calling `report` after each row.
pub fn kernels(
    gpu: &Gpu,
    cfg: &BenchConfig,
    report: &mut dyn FnMut(&BenchRow),
) -> Result<Vec<BenchRow>> {
    let _no_grad = autograd::no_grad();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut rows = Vec::new();
    let mut push = |row: BenchRow, rows: &mut Vec<BenchRow>| {
        report(&row);
        rows.push(row);
    };
    for &n in &cfg.gemm_sizes {
        let a = random(gpu, &mut rng, &[n, n])?;
        let b = random(gpu, &mut rng, &[n, n])?;
        let seconds = time_calls(gpu, cfg, &|| drop(gemm::matmul(&a, &b, false, false)))?;
        push(
            BenchRow {
                name: format!("gemm {n}x{n}x{n}"),
                seconds,
                flops: 2.0 * (n as f64).powi(3),
            },
            &mut rows,
        );
    }
    for case in &VQVAE_CONVS {
        let options = Conv2dOptions::new(case.stride, case.pad);
        // the convolution in conv2d terms: x is the larger side of a transposed convolution
        let (x_size, y_size, x_ch, y_ch) = if case.transposed {
            let out = conv::conv_transpose_out_size(case.size, case.k, case.stride, case.pad, 0)
                .unwrap_or(1);
            (out, case.size, case.cout, case.cin)
        } else {
            let out = conv::conv_out_size(case.size, case.k, case.stride, case.pad).unwrap_or(1);
            (case.size, out, case.cin, case.cout)
        };
        let x = random(gpu, &mut rng, &[cfg.batch, x_ch, x_size, x_size])?;
        let y = random(gpu, &mut rng, &[cfg.batch, y_ch, y_size, y_size])?;
        let w = random(gpu, &mut rng, &[y_ch, x_ch, case.k, case.k])?;
        let flops = conv::conv2d_flops(
            [cfg.batch, x_ch, x_size, x_size],
            [y_ch, x_ch, case.k, case.k],
            options,
        );
        let k = (case.k, case.k);
        let t_options = ConvTranspose2dOptions::new(case.stride, case.pad, 0);
        let forward = if case.transposed {
            time_calls(gpu, cfg, &|| {
                drop(conv::conv_transpose2d(&y, &w, None, t_options))
            })?
        } else {
            time_calls(gpu, cfg, &|| drop(conv::conv2d(&x, &w, None, options)))?
        };
        // backward of a conv: input grad (= convT forward) and weight grad; of a convT: conv forward and weight grad
        let input_grad = if case.transposed {
            time_calls(gpu, cfg, &|| drop(conv::conv2d(&x, &w, None, options)))?
        } else {
            time_calls(gpu, cfg, &|| {
                drop(conv::conv2d_input_grad(&y, &w, (x_size, x_size), options))
            })?
        };
        let weight_grad = time_calls(gpu, cfg, &|| {
            drop(conv::conv2d_weight_grad(&y, &x, k, options))
        })?;
        for (pass, seconds) in [
            ("fwd", forward),
            ("bwd input", input_grad),
            ("bwd weight", weight_grad),
        ] {
            push(
                BenchRow {
                    name: format!("{} {pass}", case.name),
                    seconds,
                    flops,
                },
                &mut rows,
            );
        }
    }
    Ok(rows)
}

/// One shape of the quantizer benchmark.
#[derive(Clone, Debug)]
pub struct QuantizerRow {
    /// Rows N, codes K, dimension D.
    pub n: usize,
    /// Codebook size.
    pub k: usize,
    /// Code dimension.
    pub d: usize,
    /// Median seconds per call of the fused kernel (norms + search + merge).
    pub fused: f64,
    /// Median seconds per call of the one-thread-per-row kernel.
    pub naive: f64,
    /// Whether the fused result matched a CPU reference on the first rows checked.
    pub fused_correct: bool,
    /// Whether the naive result agreed with the fused one everywhere.
    pub naive_agrees: bool,
}

impl QuantizerRow {
    /// GFLOP/s of a kernel taking `seconds` (2 N K D flops).
    pub fn gflops(&self, seconds: f64) -> f64 {
        2.0 * (self.n * self.k * self.d) as f64 / seconds / 1e9
    }
}

/// Nearest-code search for every (N, K, D): the fused kernel against the naive baseline, after a
/// correctness check of the fused result against an f64 CPU argmin on the first 64 rows.
pub fn quantizer(
    gpu: &Gpu,
    shapes: &[(usize, usize, usize)],
    cfg: &BenchConfig,
    report: &mut dyn FnMut(&QuantizerRow),
) -> Result<Vec<QuantizerRow>> {
    let _no_grad = autograd::no_grad();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut rows = Vec::new();
    for &(n, k, d) in shapes {
        // z as [1, D, 1, N]: row r has elements z[c * N + r]
        let zv: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let ev: Vec<f32> = (0..k * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let z = Tensor::from_slice(gpu, &[1, d, 1, n], &zv)?;
        let e = Tensor::from_slice(gpu, &[k, d], &ev)?;
        let fused_codes = vq::nearest_codes(&z, &e).to_vec()?;
        let naive_codes = vq::nearest_codes_naive(&z, &e).to_vec()?;
        let fused_correct = (0..n.min(64)).all(|r| {
            let dist = |c: usize| {
                (0..d)
                    .map(|j| (zv[j * n + r] as f64 - ev[c * d + j] as f64).powi(2))
                    .sum::<f64>()
            };
            let best = (0..k).map(dist).fold(f64::MAX, f64::min);
            dist(fused_codes[r] as usize) <= best + 1e-4 * (1.0 + best.abs())
        });
        let naive_agrees = fused_codes == naive_codes;
        let fused = time_calls(gpu, cfg, &|| drop(vq::nearest_codes(&z, &e)))?;
        let naive = time_calls(gpu, cfg, &|| drop(vq::nearest_codes_naive(&z, &e)))?;
        let row = QuantizerRow {
            n,
            k,
            d,
            fused,
            naive,
            fused_correct,
            naive_agrees,
        };
        report(&row);
        rows.push(row);
    }
    Ok(rows)
}

/// Training throughput of a VQ-VAE and where a step's GPU time goes.
#[derive(Clone, Debug)]
pub struct VqVaeBench {
    /// Training images per second (whole steps, no intermediate syncs).
    pub images_per_s: f64,
    /// Mean seconds per step of each phase: encoder, quantizer, decoder + loss, backward, optimizer.
    pub phases: [f64; 5],
    /// The clock of the phase split.
    pub clock: Clock,
}

/// Names of [`VqVaeBench::phases`].
pub const PHASES: [&str; 5] = [
    "encoder",
    "quantizer",
    "decoder + loss",
    "backward",
    "optimizer",
];

/// Trains `config` on random images in [-0.5, 0.5) for `steps` steps after 3 warm-up steps.
pub fn vqvae(gpu: &Gpu, config: VqVaeConfig, batch: usize, steps: usize) -> Result<VqVaeBench> {
    let shape = [config.in_channels, 32, 32];
    let mut trainer = VqVaeTrainer::new(gpu, config, 0, 3e-4, batch, shape, 1.0 / 12.0)?;
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let images: Vec<f32> = (0..batch * shape.iter().product::<usize>())
        .map(|_| rng.random_range(-0.5..0.5))
        .collect();
    for _ in 0..3 {
        trainer.train_step(&images)?;
    }
    let steps = steps.max(1);
    let mut whole = GpuTimer::new(gpu);
    whole.start(gpu)?;
    for _ in 0..steps {
        trainer.train_step(&images)?;
    }
    let seconds = whole.stop(gpu)?;
    let mut timer = GpuTimer::with_marks(gpu, 6);
    let mut phases = [0.0; 5];
    for _ in 0..steps {
        trainer.timed_step(&images, Some(&mut timer))?;
        for (total, t) in phases.iter_mut().zip(timer.read(gpu)?) {
            *total += t / steps as f64;
        }
    }
    trainer.take_metrics()?;
    Ok(VqVaeBench {
        images_per_s: (steps * batch) as f64 / seconds,
        phases,
        clock: timer.clock(),
    })
}

/// Which clock the benchmark rows were measured with on this GPU.
pub fn clock(gpu: &Gpu) -> Clock {
    if gpu.features().timestamp_query {
        Clock::GpuTimestamps
    } else {
        Clock::WallClock
    }
}
