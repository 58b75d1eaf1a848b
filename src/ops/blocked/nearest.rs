//! The vector quantizer's nearest-code search on the blocked GEMM's block (`nearest` of
//! `shaders/blocked.wgsl`): the code-by-row products folded into each row's running argmin.

use super::{Params, A, B, BIAS, BLOCK, C, C_DIST, MAX_K_CHUNK, SHADER, WG};
use crate::gpu::{Gpu, Kernel};
use crate::tensor::Tensor;

/// Codes one invocation of the CPU set's nearest-code search takes per step (8 groups of
/// [`BLOCK`]).
const CODES_PER_STEP: usize = 8 * BLOCK;

/// Codes per chunk of the CPU set's nearest-code search for codes of dimension `d`: one invocation
/// loops (d / 4 + d % 4 + 64) times per 64 codes, under the driver's loop limit.
pub(crate) fn nearest_chunk(d: usize) -> usize {
    (MAX_K_CHUNK / 4 / (d / 4 + d % 4 + CODES_PER_STEP)).max(1) * CODES_PER_STEP
}

/// Whether the CPU set's nearest-code search takes z [B, D, H, W] in `chunks` chunks of codes: its
/// planes must hold whole vec4 and its launch fit the adapter.
pub(crate) fn nearest_fits(gpu: &Gpu, rows: usize, hw: usize, chunks: usize) -> bool {
    let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
    hw.is_multiple_of(4) && rows.div_ceil(BLOCK * WG) <= max && chunks <= max
}

/// Records the CPU set's nearest-code search of `z` [B, D, H, W] in `codebook` [K, D] with the
/// codes' squared `norms` [K], `per_chunk` codes per chunk: each row's best code of each chunk
/// into `candidates` [chunks, N] and its distance into `distances` (see `blocked.wgsl`).
pub(crate) fn nearest(
    z: &Tensor,
    codebook: &Tensor,
    norms: &Tensor,
    per_chunk: usize,
    candidates: &Tensor,
    distances: &Tensor,
) {
    let (&[batch, d, h, w], &[k, _]) = (z.shape(), codebook.shape()) else {
        panic!("nearest: z must be [B, D, H, W] and the codebook [K, D]");
    };
    let (rows, hw) = (batch * h * w, h * w);
    let chunks = k.div_ceil(per_chunk);
    let params = Params {
        m: k as u32,
        n: rows as u32,
        k: d as u32,
        k_chunk: per_chunk as u32,
        a_m: d as u32,
        b_k: hw as u32,
        b_inner: hw as u32,
        b_outer: (d * hw) as u32,
        ..Params::default()
    };
    let kernel = Kernel::new(&SHADER, "nearest")
        .flag("B_VEC4", true)
        .with("WG", WG as f64);
    let args = [
        codebook.bind(A),
        z.bind_vec4(B),
        norms.bind(BIAS),
        candidates.bind(C),
        distances.bind(C_DIST),
    ];
    super::dispatch_with_copies(
        z.gpu(),
        (kernel, &params),
        (&args, true),
        [rows.div_ceil(BLOCK * WG) as u32, 1, chunks as u32],
        2.0 * (rows * k * d) as f64,
    );
}
