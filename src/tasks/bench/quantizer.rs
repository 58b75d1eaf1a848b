//! `bench quantizer`: the fused nearest-code search against the one-thread-per-row kernel, in
//! GFLOP/s (2NKD), each checked against an f64 CPU argmin first.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::autograd;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, KernelSet};
use crate::nn::{MAX_CODES, MAX_CODE_DIM};
use crate::ops::gemm::GemmTile;
use crate::ops::vq;
use crate::tensor::Tensor;

use super::matching_gemm::{time_matching_gemm, MatchingGemm};
use super::{adapter_line, elements_that_fit, time_calls, BenchConfig};

/// The grid of shapes and the timing of `bench quantizer`.
#[derive(Clone, Debug)]
pub struct QuantizerOptions {
    /// Encoder vectors N.
    pub n: Vec<usize>,
    /// Codebook sizes K.
    pub k: Vec<usize>,
    /// Code dimensions D.
    pub d: Vec<usize>,
    /// Calls per repeat and repeats.
    pub timing: BenchConfig,
}

/// The default (N, K, D) grid of `bench quantizer` on an adapter of type `adapter`: on a CPU
/// adapter (a software driver) a small one, since the naive kernel's calls at the GPU grid's
/// largest shape take minutes each there and the whole grid hours.
pub fn default_grid(adapter: wgpu::DeviceType) -> [Vec<usize>; 3] {
    if adapter == wgpu::DeviceType::Cpu {
        [vec![2048, 8192], vec![512], vec![64]]
    } else {
        [vec![4096, 65536], vec![512, 8192], vec![64, 256]]
    }
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
    /// On the GPU kernel set: the fused search on the tile it did not choose, its median seconds
    /// per call, and whether its codes equal the chosen tile's.
    pub other_tile: Option<(GemmTile, f64, bool)>,
    /// The kernel set's plain GEMM of N x K x D (rows by codes), timed the same way; over fewer
    /// rows where the N x K output would not fit in one buffer, `None` where not even that fits.
    pub gemm: Option<MatchingGemm>,
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
        let (zn, en) = (
            elements_that_fit(gpu, &[d, n])?,
            elements_that_fit(gpu, &[k, d])?,
        );
        let zv: Vec<f32> = (0..zn).map(|_| rng.random_range(-1.0..1.0)).collect();
        let ev: Vec<f32> = (0..en).map(|_| rng.random_range(-1.0..1.0)).collect();
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
        let other_tile = if gpu.kernel_set() == KernelSet::Gpu {
            let other = GemmTile::for_product(n, k).other();
            let agrees = vq::nearest_codes_on_tile(&z, &e, other).to_vec()? == fused_codes;
            let seconds = time_calls(gpu, cfg, &|| drop(vq::nearest_codes_on_tile(&z, &e, other)))?;
            Some((other, seconds, agrees))
        } else {
            None
        };
        let gemm = time_matching_gemm(gpu, &mut rng, cfg, (n, k, d))?;
        let row = QuantizerRow {
            n,
            k,
            d,
            fused,
            naive,
            fused_correct,
            naive_agrees,
            other_tile,
            gemm,
        };
        report(&row);
        rows.push(row);
    }
    Ok(rows)
}

/// `bench quantizer`: every (N, K, D) of the grid, one row each with the result of its check.
pub fn run(gpu: &Gpu, options: &QuantizerOptions) -> Result<Vec<QuantizerRow>> {
    let cfg = &options.timing;
    cfg.validate()?;
    let (n, k, d) = (&options.n, &options.k, &options.d);
    if n.iter().chain(k).chain(d).any(|&v| v == 0)
        || d.iter().any(|&v| v > MAX_CODE_DIM)
        || k.iter().any(|&v| v > MAX_CODES)
    {
        return Err(Error::InvalidArgument(format!(
            "sizes must be positive, D at most {MAX_CODE_DIM}, K at most {MAX_CODES}"
        )));
    }
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    println!(
        "{}; {} calls x {} repeats (median); N {} x K {} x D {}",
        adapter_line(gpu),
        cfg.iters,
        cfg.repeats,
        list(n),
        list(k),
        list(d)
    );
    println!(
        "{:>6} {:>6} {:>4} {:>11} {:>9} {:>11} {:>9} {:>8} {:>9} {:>8}  check",
        "N",
        "K",
        "D",
        "fused ms",
        "GFLOP/s",
        "naive ms",
        "GFLOP/s",
        "speed-up",
        "GEMM GF/s",
        "vs GEMM"
    );
    let shapes: Vec<(usize, usize, usize)> = n
        .iter()
        .flat_map(|&n| {
            k.iter()
                .flat_map(move |&k| d.iter().map(move |&d| (n, k, d)))
        })
        .collect();
    let mut print_row = |r: &QuantizerRow| {
        let check = match (r.fused_correct, r.naive_agrees) {
            (true, true) => "fused = CPU reference, naive = fused",
            (true, false) => {
                "fused = CPU reference; NAIVE DIFFERS (software drivers cut its long loop)"
            }
            (false, _) => "FUSED WRONG vs CPU reference",
        };
        let other = r
            .other_tile
            .map_or(String::new(), |(tile, seconds, agrees)| {
                format!(
                    "; fused on the {tile}: {:.3} ms, {:.1} GFLOP/s, {}",
                    seconds * 1e3,
                    r.gflops(seconds),
                    if agrees { "same codes" } else { "CODES DIFFER" }
                )
            });
        // the GEMM's rate and the fused search's share of it; its shape where it has fewer rows
        let (gemm_rate, gemm_share, gemm_rows) = match r.gemm {
            Some(g) => (
                format!("{:.1}", g.gflops()),
                format!("{:.0}%", r.gflops(r.fused) / g.gflops() * 100.0),
                if g.m < r.n {
                    format!("; GEMM over {} of the rows ({})", g.m, g.shape())
                } else {
                    String::new()
                },
            ),
            None => ("-".into(), "-".into(), "; GEMM too large to bind".into()),
        };
        println!(
            "{:>6} {:>6} {:>4} {:>11.3} {:>9.1} {:>11.3} {:>9.1} {:>7.1}x {gemm_rate:>9} {gemm_share:>8}  {check}{other}{gemm_rows}",
            r.n,
            r.k,
            r.d,
            r.fused * 1e3,
            r.gflops(r.fused),
            r.naive * 1e3,
            r.gflops(r.naive),
            r.naive / r.fused
        )
    };
    // a line before each shape: on a software driver the large ones take minutes each
    let mut rows = Vec::new();
    for (i, &(n, k, d)) in shapes.iter().enumerate() {
        eprintln!(
            "timing shape {} of {}: N = {n}, K = {k}, D = {d}",
            i + 1,
            shapes.len()
        );
        rows.extend(quantizer(gpu, &[(n, k, d)], cfg, &mut print_row)?);
    }
    Ok(rows)
}
