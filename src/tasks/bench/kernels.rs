//! `bench kernels`: GEMM and the convolutions of the reference VQ-VAE (docs/design.md), each
//! convolution as forward, input gradient and weight gradient.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::autograd;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, KernelSet};
use crate::ops::conv::{self, Conv2dOptions, ConvTranspose2dOptions};
use crate::ops::gemm::{self, GemmTile};

use super::matching_gemm::{time_matching_gemm, MatchingGemm};
use super::{adapter_line, elements_that_fit, random, time_calls, BenchConfig};

/// One measured kernel.
#[derive(Clone, Debug)]
pub struct BenchRow {
    /// What ran.
    pub name: String,
    /// Median seconds per call.
    pub seconds: f64,
    /// Floating-point operations per call.
    pub flops: f64,
    /// For a convolution product: the plain GEMM of its M x N x K (see [`ConvProducts`]), timed
    /// the same way; `None` for the GEMM rows themselves and where the adapter cannot bind it.
    pub gemm: Option<MatchingGemm>,
}

impl BenchRow {
    /// Achieved GFLOP/s.
    pub fn gflops(&self) -> f64 {
        self.flops / self.seconds / 1e9
    }

    /// This row's rate as a fraction of its matching GEMM's.
    pub fn gemm_fraction(&self) -> Option<f64> {
        self.gemm.map(|g| self.gflops() / g.gflops())
    }
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

/// The three products of a convolution in conv2d terms (x the larger side of a transposed
/// convolution), each as the (M, N, K) of the GEMM it is: the forward `y = w x` is
/// (y channels, batch x y pixels, x channels x taps); the input gradient, one product per stride
/// phase, is together (x channels, batch x x pixels, y channels x the taps of a phase); the weight
/// gradient is (y channels, x channels x taps, batch x y pixels). Each costs the convolution's flops.
struct ConvProducts {
    forward: (usize, usize, usize),
    input_grad: (usize, usize, usize),
    weight_grad: (usize, usize, usize),
}

impl ConvCase {
    /// (x size, y size, x channels, y channels) of the convolution in conv2d terms.
    fn conv2d_sides(&self) -> (usize, usize, usize, usize) {
        if self.transposed {
            let out = conv::conv_transpose_out_size(self.size, self.k, self.stride, self.pad, 0)
                .unwrap_or(1);
            (out, self.size, self.cout, self.cin)
        } else {
            let out = conv::conv_out_size(self.size, self.k, self.stride, self.pad).unwrap_or(1);
            (self.size, out, self.cin, self.cout)
        }
    }

    /// The GEMMs of this convolution at `batch`.
    fn products(&self, batch: usize) -> ConvProducts {
        let (x_size, y_size, x_ch, y_ch) = self.conv2d_sides();
        let taps = self.k * self.k;
        let phase_taps = self.k.div_ceil(self.stride).pow(2);
        ConvProducts {
            forward: (y_ch, batch * y_size * y_size, x_ch * taps),
            input_grad: (x_ch, batch * x_size * x_size, y_ch * phase_taps),
            weight_grad: (y_ch, x_ch * taps, batch * y_size * y_size),
        }
    }
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
    // every operand checked against the binding limit before anything is timed
    for &n in &cfg.gemm_sizes {
        elements_that_fit(gpu, &[n, n])?;
    }
    for case in &VQVAE_CONVS {
        let (x_size, y_size, x_ch, y_ch) = case.conv2d_sides();
        elements_that_fit(gpu, &[cfg.batch, x_ch, x_size, x_size])?;
        elements_that_fit(gpu, &[cfg.batch, y_ch, y_size, y_size])?;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut rows = Vec::new();
    let mut push = |row: BenchRow, rows: &mut Vec<BenchRow>| {
        report(&row);
        rows.push(row);
    };
    for &n in &cfg.gemm_sizes {
        let a = random(gpu, &mut rng, &[n, n])?;
        let b = random(gpu, &mut rng, &[n, n])?;
        // on the GPU set also the tile the product would not take, for comparison
        let mut tiles = vec![(format!("gemm {n}x{n}x{n}"), None)];
        if gpu.kernel_set() == KernelSet::Gpu {
            let other = GemmTile::for_product(n, n).other();
            tiles.push((format!("gemm {n}x{n}x{n}, {other}"), Some(other)));
        }
        for (name, tile) in tiles {
            let seconds = time_calls(gpu, cfg, &|| match tile {
                None => drop(gemm::matmul(&a, &b, false, false)),
                Some(tile) => drop(gemm::matmul_on_tile(&a, &b, false, false, tile)),
            })?;
            push(
                BenchRow {
                    name,
                    seconds,
                    flops: 2.0 * (n as f64).powi(3),
                    gemm: None,
                },
                &mut rows,
            );
        }
    }
    for case in &VQVAE_CONVS {
        let options = Conv2dOptions::new(case.stride, case.pad);
        let (x_size, y_size, x_ch, y_ch) = case.conv2d_sides();
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
        // a transposed convolution's forward is the conv2d input gradient, and the other way round
        let products = case.products(cfg.batch);
        let (forward_product, input_product) = match case.transposed {
            true => (products.input_grad, products.forward),
            false => (products.forward, products.input_grad),
        };
        for (pass, seconds, product) in [
            ("fwd", forward, forward_product),
            ("bwd input", input_grad, input_product),
            ("bwd weight", weight_grad, products.weight_grad),
        ] {
            let gemm = time_matching_gemm(gpu, &mut rng, cfg, product)?;
            push(
                BenchRow {
                    name: format!("{} {pass}", case.name),
                    seconds,
                    flops,
                    gemm,
                },
                &mut rows,
            );
        }
    }
    Ok(rows)
}

/// `bench kernels`: prints one row per kernel after a header naming the adapter and the clock.
pub fn run(gpu: &Gpu, cfg: &BenchConfig) -> Result<Vec<BenchRow>> {
    cfg.validate()?;
    if cfg.gemm_sizes.contains(&0) {
        return Err(Error::InvalidArgument(
            "GEMM sizes must be at least 1".into(),
        ));
    }
    println!(
        "{}; batch {}, {} calls x {} repeats (median)",
        adapter_line(gpu),
        cfg.batch,
        cfg.iters,
        cfg.repeats
    );
    println!(
        "{:<44} {:>12} {:>10}   {:<20} {:>10} {:>10} {:>8}",
        "kernel", "ms/call", "GFLOP/s", "GEMM of its MxNxK", "ms/call", "GFLOP/s", "vs GEMM"
    );
    kernels(gpu, cfg, &mut |row| {
        let gemm = match (row.gemm, row.gemm_fraction()) {
            (Some(g), Some(fraction)) => format!(
                "   {:<20} {:>10.4} {:>10.1} {:>7.0}%",
                g.shape(),
                g.seconds * 1e3,
                g.gflops(),
                fraction * 100.0
            ),
            _ => String::new(),
        };
        println!(
            "{:<44} {:>12.4} {:>10.1}{gemm}",
            row.name,
            row.seconds * 1e3,
            row.gflops()
        )
    })
}
