//! The products of a convolution recorded as launches: on the CPU set's lowering where it takes
//! the shape, otherwise on `conv.wgsl`, split along K where the product has few output tiles.

use super::shape::ConvShape;
use super::tiling::{gemm_extent, k_split, Tile};
use super::{lowered, Mode, BIAS, GATE, LHS, OUT, RESIDUAL, RHS, SHADER};
use crate::gpu::Kernel;
use crate::ops::{reduce, Epilogue};
use crate::tensor::Tensor;

/// Records one launch: `out.0 = mode(lhs, rhs) (+ bias)` (with the residual, ReLU and gate of
/// `out.1`; its `into` is not looked at), with K in `split` = (chunks, K per chunk) as
/// [`k_split`] gives it; split along K, `out.0` holds one copy of the result per chunk (and there
/// is no epilogue).
fn launch(
    s: &ConvShape,
    mode: Mode,
    split: (u32, u32),
    lhs: &Tensor,
    rhs: &Tensor,
    bias: Option<&Tensor>,
    (out, epilogue): (&Tensor, Epilogue),
) {
    let gpu = lhs.gpu();
    let (m, tiles_n_size, phases) = gemm_extent(s, mode);
    let (chunks, k_chunk) = split;
    let tile = Tile::for_rows(m);
    let mut kernel = Kernel::new(&SHADER, tile.entry)
        .with("MODE", mode as u32 as f64)
        .flag("HAS_BIAS", bias.is_some())
        .flag("MASKED", s.masked())
        .flag("RESIDUAL", epilogue.residual.is_some())
        .flag("GATED", epilogue.gate.is_some());
    for &(name, value) in tile.constants {
        kernel = kernel.with(name, value);
    }
    let mut params = *s;
    params.phases = phases;
    params.z_groups = phases * chunks;
    params.k_chunk = k_chunk;
    params.relu = epilogue.relu_flag();
    let tiles_n = tiles_n_size.div_ceil(tile.cols as usize) as u32;
    let max = gpu.limits().max_compute_workgroups_per_dimension.max(1);
    let x_groups = tiles_n.min(max);
    let workgroups = [
        x_groups,
        m.div_ceil(tile.rows as usize) as u32,
        tiles_n.div_ceil(x_groups) * params.z_groups,
    ];
    // without a bias, a residual or a gate the binding still needs a buffer: bind `lhs` again
    // (read-only)
    let args = [
        lhs.bind(LHS),
        rhs.bind(RHS),
        bias.unwrap_or(lhs).bind(BIAS),
        out.bind(OUT),
        epilogue.residual.unwrap_or(lhs).bind(RESIDUAL),
        epilogue.gate.unwrap_or(lhs).bind(GATE),
    ];
    gpu.dispatch_counted(&kernel, &params, &args, workgroups, s.flops());
}

/// Records `mode(lhs, rhs) (+ bias)` into a new tensor of `shape` or where `epilogue` says, with
/// its residual, ReLU and gate; a product split along K (see [`k_split`]) writes one partial
/// result per chunk, then sums them (the epilogue goes into the sum). No autograd.
pub(super) fn split_launch(
    s: &ConvShape,
    mode: Mode,
    lhs: &Tensor,
    rhs: &Tensor,
    bias: Option<&Tensor>,
    shape: &[usize; 4],
    epilogue: Epilogue,
) -> Tensor {
    if let Some((out, _)) = lowered::launch(s, mode, lhs, rhs, bias, shape, epilogue) {
        return out;
    }
    let gpu = lhs.gpu();
    let split = k_split(s, mode);
    let chunks = split.0 as usize;
    epilogue.check_operands(shape);
    if mode == Mode::WeightGrad && s.window_shrunk() {
        return weight_grad_over_window(s, split, (lhs, rhs), shape, epilogue.into);
    }
    if chunks == 1 {
        let out = Tensor::uninit_or(gpu, shape, epilogue.into);
        launch(s, mode, split, lhs, rhs, bias, (&out, epilogue));
        return out;
    }
    let [a, b, c, d] = *shape;
    let partial = Tensor::uninit(gpu, &[chunks, a, b, c, d]);
    launch(
        s,
        mode,
        split,
        lhs,
        rhs,
        bias,
        (&partial, Epilogue::default()),
    );
    reduce::sum_axis_with(&partial, 0, epilogue)
}

/// The weight gradient of a convolution whose products run over a kernel window smaller than the
/// kernel ([`ConvShape::window_shrunk`]), with K in `split`: it writes the window's positions
/// only, into zeros (the slot `into` that autograd offers holds zeros already; a new tensor is
/// filled with them: [`super::zeroed_weight_grad`]). Split along K, the partial results hold the
/// window's positions only, and their sums go to the kernel's positions in runs.
fn weight_grad_over_window(
    s: &ConvShape,
    split: (u32, u32),
    (dy, x): (&Tensor, &Tensor),
    shape: &[usize; 4],
    into: Option<&Tensor>,
) -> Tensor {
    let gpu = dy.gpu();
    let out = super::zeroed_weight_grad(gpu, shape, into);
    let mode = Mode::WeightGrad;
    let whole = Epilogue::default();
    if split.0 == 1 {
        launch(s, mode, split, dy, x, None, (&out, whole));
    } else {
        let (run, taps) = (s.window_taps() as usize, (s.k_h * s.k_w) as usize);
        let partial = Tensor::uninit(gpu, &[split.0 as usize, shape[0] * shape[1] * run]);
        launch(s, mode, split, dy, x, None, (&partial, whole));
        reduce::sum_chunks_into_runs(&partial, (run, taps), &out);
    }
    out
}
