//! Host side of `shaders/ema.wgsl`: the EMA codebook update with Laplace-smoothed counts, and
//! dead-code restarts. The per-code counts and sums they take come from
//! [`crate::ops::gather::index_sums`].

use crate::gpu::{Binding, Shader};
use crate::ops::reduce;
use crate::tensor::Tensor;

/// `shaders/ema.wgsl`.
pub static SHADER: Shader = crate::shader!(
    "ema",
    Params,
    [
        STEP_COUNTS,
        STEP_SUMS,
        CLUSTER_SIZE,
        EMBED_AVG,
        TOTAL,
        SMOOTHED_SIZE,
        AVERAGES,
        CODEBOOK,
        USAGE,
        VECTORS,
        UNUSED_STEPS,
        RESTART_CODEBOOK,
        RESTART_AVG,
        RESTART_SIZE,
        RESTARTED,
    ]
);
// ema_accumulate
const STEP_COUNTS: Binding = Binding::read(1, "step_counts");
const STEP_SUMS: Binding = Binding::read(2, "step_sums");
const CLUSTER_SIZE: Binding = Binding::read_write(3, "cluster_size");
const EMBED_AVG: Binding = Binding::read_write(4, "embed_avg");
// ema_normalize
const TOTAL: Binding = Binding::read(5, "total");
const SMOOTHED_SIZE: Binding = Binding::read(6, "smoothed_size");
const AVERAGES: Binding = Binding::read(7, "averages");
const CODEBOOK: Binding = Binding::read_write(8, "codebook");
// restart_dead
const USAGE: Binding = Binding::read(9, "usage");
const VECTORS: Binding = Binding::read(10, "vectors");
const UNUSED_STEPS: Binding = Binding::read_write(11, "unused_steps");
const RESTART_CODEBOOK: Binding = Binding::read_write(12, "restart_codebook");
const RESTART_AVG: Binding = Binding::read_write(13, "restart_avg");
const RESTART_SIZE: Binding = Binding::read_write(14, "restart_size");
const RESTARTED: Binding = Binding::read_write(15, "restarted");

crate::uniform_params! {
    #[derive(Default)]
    struct Params {
        n: u32,
        k: u32,
        d: u32,
        hw: u32,
        decay: f32,
        eps: f32,
        seed: u32,
        restart_after: u32,
        _pad: [u32; 4],
    }
}

/// The running statistics an EMA codebook keeps beside it (owned by the quantizer): the PyTorch
/// buffers `cluster_size` [K] and `embed_avg` [K, D], and the steps each code went unused [K].
#[derive(Clone, Copy)]
pub struct EmaTensors<'a> {
    /// N_k, [K].
    pub cluster_size: &'a Tensor,
    /// m_k, [K, D].
    pub embed_avg: &'a Tensor,
    /// Steps since each code was last chosen, [K].
    pub unused_steps: &'a Tensor,
}

/// One EMA step with decay `decay` and Laplace epsilon `eps`: N_k <- g N_k + (1-g) n_k,
/// m_k <- g m_k + (1-g) sum_k, then e_k <- m_k / ((N_k + eps) / (n + K eps) n) written into
/// `codebook` [K, D] in place. `counts` [K] and `sums` [K, D] are this step's per-code statistics.
pub fn ema_update(
    codebook: &Tensor,
    state: EmaTensors,
    counts: &Tensor,
    sums: &Tensor,
    decay: f32,
    eps: f32,
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
        decay,
        eps,
        ..Params::default()
    };
    let gpu = codebook.gpu();
    gpu.run(
        &SHADER,
        "ema_accumulate",
        &params,
        &[
            counts.bind(STEP_COUNTS),
            sums.bind(STEP_SUMS),
            state.cluster_size.bind(CLUSTER_SIZE),
            state.embed_avg.bind(EMBED_AVG),
        ],
        gpu.grid_for(k * d),
    );
    let total = reduce::sum(&state.cluster_size.detach());
    gpu.run(
        &SHADER,
        "ema_normalize",
        &params,
        &[
            total.bind(TOTAL),
            state.cluster_size.bind(SMOOTHED_SIZE),
            state.embed_avg.bind(AVERAGES),
            codebook.bind(CODEBOOK),
        ],
        gpu.grid_for(k * d),
    );
}

/// Codes unused for `restart_after` consecutive steps (counted from `counts` of this step) are
/// re-initialised from vectors of `z` [B, D, H, W] chosen by a counter-based hash of `seed`; their
/// EMA statistics restart as one observation. Returns a [K] tensor of 1.0 where a code restarted.
pub fn restart_dead(
    codebook: &Tensor,
    state: EmaTensors,
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
        &SHADER,
        "restart_dead",
        &params,
        &[
            counts.bind(USAGE),
            z.bind(VECTORS),
            state.unused_steps.bind(UNUSED_STEPS),
            codebook.bind(RESTART_CODEBOOK),
            state.embed_avg.bind(RESTART_AVG),
            state.cluster_size.bind(RESTART_SIZE),
            restarted.bind(RESTARTED),
        ],
        gpu.grid_for(k),
    );
    restarted
}
