//! The plain GEMM of a benchmarked kernel's M x N x K, timed beside it: the rate a convolution or
//! the nearest-code search is compared with.

use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::gemm;

use super::{random, time_calls, BenchConfig};

/// A GEMM `[m, k] @ [k, n]` on the kernel set's own GEMM and its median seconds per call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatchingGemm {
    /// Rows of the product timed (fewer than asked where the whole output would not fit in one
    /// buffer; see [`rows_that_fit`]).
    pub m: usize,
    /// Columns.
    pub n: usize,
    /// Depth: the terms of each output's sum.
    pub k: usize,
    /// Median seconds per call.
    pub seconds: f64,
}

impl MatchingGemm {
    /// Achieved GFLOP/s (2 M N K per call).
    pub fn gflops(&self) -> f64 {
        2.0 * (self.m as f64) * (self.n as f64) * (self.k as f64) / self.seconds / 1e9
    }

    /// `M x N x K` as the benchmarks print it.
    pub fn shape(&self) -> String {
        format!("{}x{}x{}", self.m, self.n, self.k)
    }
}

/// Rows of an `m` x `n` x `k` product kept so that neither its `[m, k]` operand nor its `[m, n]`
/// output exceeds `limit_bytes` of f32: `m` itself where it fits, else as many rows as fit (a rate
/// over fewer rows of the same width and depth), `None` when its `[k, n]` operand alone exceeds
/// it (then not even one row of the others would fit either).
fn rows_that_fit(m: usize, n: usize, k: usize, limit_bytes: u64) -> Option<usize> {
    let (n, k) = (n.max(1) as u64, k.max(1) as u64);
    if k.checked_mul(n)?.checked_mul(4)? > limit_bytes {
        return None;
    }
    let fit = limit_bytes / (4 * n.max(k));
    Some(m.min(usize::try_from(fit).unwrap_or(usize::MAX)))
}

/// Times `[m, k] @ [k, n]` (random operands from `rng`) as the benchmarks time their kernels;
/// `None` when the product cannot be bound on this adapter even with fewer rows.
pub(super) fn time_matching_gemm(
    gpu: &Gpu,
    rng: &mut ChaCha8Rng,
    cfg: &BenchConfig,
    (m, n, k): (usize, usize, usize),
) -> Result<Option<MatchingGemm>> {
    let Some(m) = rows_that_fit(m, n, k, gpu.max_binding_bytes()) else {
        return Ok(None);
    };
    let a = random(gpu, rng, &[m, k])?;
    let b = random(gpu, rng, &[k, n])?;
    let seconds = time_calls(gpu, cfg, &|| drop(gemm::matmul(&a, &b, false, false)))?;
    Ok(Some(MatchingGemm { m, n, k, seconds }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_keeps_the_rows_that_fit_in_one_buffer() {
        // everything fits: every row kept
        assert_eq!(rows_that_fit(4096, 512, 64, 1 << 27), Some(4096));
        // 65536 x 8192 outputs are 2 GiB: a 128 MiB binding holds 4096 such rows
        assert_eq!(rows_that_fit(65536, 8192, 256, 1 << 27), Some(4096));
        // the [m, k] operand counts too when it is the wider: 1 KiB rows in 8 KiB
        assert_eq!(rows_that_fit(100, 4, 256, 8192), Some(8));
        // the [k, n] operand alone too large
        assert_eq!(rows_that_fit(10, 64, 64, 16383), None);
        assert_eq!(rows_that_fit(10, 64, 64, 16384), Some(10));
    }
}
