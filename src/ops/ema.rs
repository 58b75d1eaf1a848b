//! Host side of `shaders/ema.wgsl`: deterministic per-code counts and sums, the EMA codebook update
//! with Laplace-smoothed counts, and dead-code restarts.

use bytemuck::{Pod, Zeroable};

use crate::gpu::Family;
use crate::ops::reduce;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    k: u32,
    d: u32,
    hw: u32,
    decay: f32,
    eps: f32,
    seed: u32,
    restart_after: u32,
    segment: u32,
    _pad: [u32; 3],
}

/// Rows per segment of `code_sums` (a multiple of 256): bounds the loop work of one invocation,
/// which the software Vulkan driver (llvmpipe) silently cuts after 65535 iterations.
const SEGMENT_ROWS: usize = 16384;

fn rows_params(codes: &Tensor, src: &Tensor, k: usize) -> Params {
    let (&[batch, h, w], &[batch2, d, h2, w2]) = (codes.shape(), src.shape()) else {
        panic!(
            "code_sums: codes must be [B, H, W] and vectors [B, D, H, W], got {:?} and {:?}",
            codes.shape(),
            src.shape()
        );
    };
    assert_eq!(
        (batch, h, w),
        (batch2, h2, w2),
        "code_sums: codes and vectors disagree on batch or size"
    );
    assert!(
        d <= super::vq::MAX_CODE_DIM,
        "code_sums: code dimension {d} above {}",
        super::vq::MAX_CODE_DIM
    );
    Params {
        n: (batch * h * w) as u32,
        k: k as u32,
        d: d as u32,
        hw: (h * w) as u32,
        ..Params::default()
    }
}

/// For codes [B, H, W] and vectors src [B, D, H, W]: the number of positions that chose each of
/// the `k` codes, [K], and the sum of their vectors, [K, D]. Sums run in position order within
/// segments of rows, and the segments are added in order. No gradient.
pub fn code_sums(codes: &Tensor, src: &Tensor, k: usize) -> (Tensor, Tensor) {
    assert!(
        (1..=super::vq::MAX_CODES).contains(&k),
        "code_sums: codebook size {k} out of range"
    );
    let mut params = rows_params(codes, src, k);
    params.segment = SEGMENT_ROWS as u32;
    let segments = (params.n as usize).div_ceil(SEGMENT_ROWS);
    let d = params.d as usize;
    let gpu = src.gpu();
    let counts = Tensor::uninit(gpu, &[segments, k]);
    let sums = Tensor::uninit(gpu, &[segments, k, d]);
    gpu.run(
        Family::Ema,
        "code_sums",
        &params,
        &[
            codes.read(1),
            src.read(2),
            counts.write_arg(3),
            sums.write_arg(4),
        ],
        [k as u32, segments as u32, 1],
    );
    if segments == 1 {
        return (counts.reshape(&[k]), sums.reshape(&[k, d]));
    }
    (reduce::sum_axis(&counts, 0), reduce::sum_axis(&sums, 0))
}

/// The running statistics of an EMA codebook (PyTorch buffers `cluster_size`, `embed_avg`) plus
/// the number of consecutive steps each code went unused.
pub struct EmaState {
    /// N_k, [K].
    pub cluster_size: Tensor,
    /// m_k, [K, D].
    pub embed_avg: Tensor,
    /// Steps since each code was last chosen, [K].
    pub unused_steps: Tensor,
}

impl EmaState {
    /// The state matching a fresh codebook: N_k = 0, m_k = e_k, no idle steps (as the reference).
    pub fn new(codebook: &Tensor) -> Self {
        let k = codebook.dim(0);
        Self {
            cluster_size: Tensor::zeros(codebook.gpu(), &[k]),
            embed_avg: crate::ops::elementwise::copy(&codebook.detach()),
            unused_steps: Tensor::zeros(codebook.gpu(), &[k]),
        }
    }
}

/// EMA hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmaConfig {
    /// Decay gamma (0.99 in the paper).
    pub decay: f32,
    /// Laplace smoothing epsilon (1e-5).
    pub eps: f32,
}

impl Default for EmaConfig {
    fn default() -> Self {
        Self {
            decay: 0.99,
            eps: 1e-5,
        }
    }
}

/// One EMA step: N_k <- g N_k + (1-g) n_k, m_k <- g m_k + (1-g) sum_k, then
/// e_k <- m_k / ((N_k + eps) / (n + K eps) n) written into `codebook` [K, D] in place.
pub fn ema_update(
    codebook: &Tensor,
    state: &EmaState,
    counts: &Tensor,
    sums: &Tensor,
    config: EmaConfig,
) {
    let &[k, d] = codebook.shape() else {
        panic!(
            "ema_update: the codebook must be [K, D], got {:?}",
            codebook.shape()
        );
    };
    assert_eq!(sums.shape(), [k, d], "ema_update: sums shape");
    let params = Params {
        k: k as u32,
        d: d as u32,
        decay: config.decay,
        eps: config.eps,
        ..Params::default()
    };
    let gpu = codebook.gpu();
    gpu.run(
        Family::Ema,
        "ema_accumulate",
        &params,
        &[
            counts.read(5),
            sums.read(6),
            state.cluster_size.write_arg(7),
            state.embed_avg.write_arg(8),
        ],
        gpu.grid_for(k * d),
    );
    let total = reduce::sum(&state.cluster_size.detach());
    gpu.run(
        Family::Ema,
        "ema_normalize",
        &params,
        &[
            total.read(9),
            state.cluster_size.read(10),
            state.embed_avg.read(11),
            codebook.write_arg(12),
        ],
        gpu.grid_for(k * d),
    );
}

/// Codes unused for `restart_after` consecutive steps (counted from `counts` of this step) are
/// re-initialised from vectors of `z` [B, D, H, W] chosen by a counter-based hash of `seed`; their
/// EMA statistics restart as one observation. Returns a [K] tensor of 1.0 where a code restarted.
pub fn restart_dead(
    codebook: &Tensor,
    state: &EmaState,
    counts: &Tensor,
    z: &Tensor,
    restart_after: u32,
    seed: u32,
) -> Tensor {
    let k = codebook.dim(0);
    let &[batch, d, h, w] = z.shape() else {
        panic!("restart_dead: z must be [B, D, H, W], got {:?}", z.shape());
    };
    let params = Params {
        n: (batch * h * w) as u32,
        k: k as u32,
        d: d as u32,
        hw: (h * w) as u32,
        seed,
        restart_after: restart_after.max(1),
        ..Params::default()
    };
    let gpu = codebook.gpu();
    let restarted = Tensor::uninit(gpu, &[k]);
    gpu.run(
        Family::Ema,
        "restart_dead",
        &params,
        &[
            counts.read(13),
            z.read(14),
            state.unused_steps.write_arg(15),
            codebook.write_arg(16),
            state.embed_avg.write_arg(17),
            state.cluster_size.write_arg(18),
            restarted.write_arg(19),
        ],
        gpu.grid_for(k),
    );
    restarted
}
