//! Host side of `shaders/gather.wgsl`: the embedding lookup (rows of a table chosen by an index
//! grid, laid out NCHW) and its adjoint, the deterministic per-index counts and sums of vectors.
//! Indices are f32 tensors holding exact integers.

use smallvec::smallvec;

use crate::autograd;
use crate::gpu::{Binding, KernelSet, Shader, CPU_LOOP_LIMIT};
use crate::ops::collective;
use crate::ops::reduce;
use crate::tensor::Tensor;

/// `shaders/gather.wgsl`.
pub static SHADER: Shader = crate::shader!(
    "gather",
    Params,
    [INDICES, TABLE, OUT, SRC, COUNTS_OUT, SUMS_OUT]
)
.with_library(&collective::LIBRARY);
const INDICES: Binding = Binding::read(1, "indices");
const TABLE: Binding = Binding::read(2, "table");
const OUT: Binding = Binding::read_write(3, "out");
const SRC: Binding = Binding::read(4, "src");
const COUNTS_OUT: Binding = Binding::read_write(5, "counts_out");
const SUMS_OUT: Binding = Binding::read_write(6, "sums_out");

crate::uniform_params! {
    #[derive(Default)]
    struct Params {
        n: u32,
        k: u32,
        d: u32,
        hw: u32,
        segment: u32,
        _pad: [u32; 3],
    }
}

/// Most table rows `index_sums` handles: one workgroup per row along x.
pub const MAX_ROWS: usize = 65535;
/// Positions per segment of `index_sums` (a multiple of 256): bounds the loop work of one
/// invocation, which the software Vulkan driver (llvmpipe) silently cuts after 65535 iterations.
const SEGMENT: usize = 16384;
/// Dimensions per workgroup of `index_sums` (two per thread).
const DIMS_PER_GROUP: usize = 512;
/// The CPU set's `index_sums_by_index` keeps partial sums of at most this many values (16 MiB);
/// beyond, `index_sums` runs.
const CPU_PARTIALS_LIMIT: usize = 1 << 22;

/// (batch, H, W) of an index grid and D of its vectors [B, D, H, W].
fn grid_of(indices: &Tensor, vectors: [usize; 4], op: &str) -> Params {
    let &[batch, h, w] = indices.shape() else {
        panic!("{op}: indices must be [B, H, W], got {:?}", indices.shape());
    };
    let [vb, d, vh, vw] = vectors;
    assert_eq!(
        (batch, h, w),
        (vb, vh, vw),
        "{op}: indices {:?} and vectors {vectors:?} disagree on batch or size",
        indices.shape()
    );
    Params {
        n: (batch * h * w) as u32,
        d: d as u32,
        hw: (h * w) as u32,
        ..Params::default()
    }
}

/// The rows of `table` [K, D] chosen by `indices` [B, H, W], as a [B, D, H, W] tensor. The
/// gradient reaches the table: each row receives the sum of the gradients at the positions that
/// chose it (see [`index_sums`]).
pub fn gather(indices: &Tensor, table: &Tensor) -> Tensor {
    let &[k, d] = table.shape() else {
        panic!("gather: the table must be [K, D], got {:?}", table.shape());
    };
    let &[batch, h, w] = indices.shape() else {
        panic!(
            "gather: indices must be [B, H, W], got {:?}",
            indices.shape()
        );
    };
    let mut params = grid_of(indices, [batch, d, h, w], "gather");
    params.k = k as u32;
    let rg = autograd::needs_grad(&[table]);
    let gpu = table.gpu();
    let out = Tensor::output(gpu, &[batch, d, h, w], rg);
    gpu.run(
        &SHADER,
        "gather",
        &params,
        &[indices.bind(INDICES), table.bind(TABLE), out.bind(OUT)],
        gpu.grid_for(out.numel()),
    );
    if rg {
        let indices = indices.clone();
        autograd::record(&[table], &out, move |g| {
            smallvec![Some(index_sums(&indices, g, k).1)]
        });
    }
    out
}

/// For `indices` [B, H, W] and vectors `src` [B, D, H, W]: the number of positions holding each of
/// the indices `0..k`, [K], and the sum of their vectors, [K, D]. Sums run in position order
/// within segments of positions, and the segments are added in order. No gradient.
pub fn index_sums(indices: &Tensor, src: &Tensor, k: usize) -> (Tensor, Tensor) {
    assert!(
        (1..=MAX_ROWS).contains(&k),
        "index_sums: {k} rows, outside 1..={MAX_ROWS}"
    );
    let &[batch, d, h, w] = src.shape() else {
        panic!(
            "index_sums: vectors must be [B, D, H, W], got {:?}",
            src.shape()
        );
    };
    let mut params = grid_of(indices, [batch, d, h, w], "index_sums");
    params.k = k as u32;
    let gpu = src.gpu();
    // a hit costs the driver two counts per dimension (its loop entry and iteration), a position one
    let cpu_segment = (CPU_LOOP_LIMIT / (2 * d + 2)).max(1);
    // the CPU set's short segments each keep a partial sum: only while they stay small
    let by_index = gpu.kernel_set() == KernelSet::Cpu
        && (params.n as usize)
            .div_ceil(cpu_segment)
            .saturating_mul(k * d)
            <= CPU_PARTIALS_LIMIT;
    let segment = if by_index { cpu_segment } else { SEGMENT };
    params.segment = segment as u32;
    let segments = (params.n as usize).div_ceil(segment);
    let counts = Tensor::uninit(gpu, &[segments, k]);
    let sums = Tensor::uninit(gpu, &[segments, k, d]);
    let (entry, groups) = if by_index {
        (
            "index_sums_by_index",
            [k.div_ceil(64) as u32, segments as u32, 1],
        )
    } else {
        (
            "index_sums",
            [k as u32, segments as u32, d.div_ceil(DIMS_PER_GROUP) as u32],
        )
    };
    gpu.run(
        &SHADER,
        entry,
        &params,
        &[
            indices.bind(INDICES),
            src.bind(SRC),
            counts.bind(COUNTS_OUT),
            sums.bind(SUMS_OUT),
        ],
        groups,
    );
    if segments == 1 {
        return (counts.reshape(&[k]), sums.reshape(&[k, d]));
    }
    (reduce::sum_axis(&counts, 0), reduce::sum_axis(&sums, 0))
}
