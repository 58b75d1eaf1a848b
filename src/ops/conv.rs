//! Host side of `shaders/conv.wgsl`: conv2d (optionally masked) and conv_transpose2d, forward and
//! backward. The transposed convolution is the adjoint of the convolution, so both run on the same
//! three kernels (forward, input gradient, weight gradient) with their roles swapped.

mod options;
mod shape;

pub use options::{
    conv_out_size, conv_transpose_out_size, Conv2dOptions, ConvTranspose2dOptions, SpatialMask,
};

use crate::autograd;
use crate::gpu::{Binding, Gpu, Kernel, OverrideAxis, Shader};
use crate::ops::reduce;
use crate::tensor::Tensor;
use shape::{dims4, shape_from_output, ConvShape};

/// `shaders/conv.wgsl`: the host uses the three modes and the tile shapes of [`TILES`].
pub static SHADER: Shader = crate::shader!(
    "conv",
    ConvShape,
    [LHS, RHS, BIAS, OUT],
    overrides: [
        &[&[("MODE", 0.0)], &[("MODE", 1.0)], &[("MODE", 2.0)]],
        TILE_CONSTANTS,
    ]
);
const LHS: Binding = Binding::read(1, "lhs");
const RHS: Binding = Binding::read(2, "rhs");
const BIAS: Binding = Binding::read(3, "bias");
const OUT: Binding = Binding::read_write(4, "out");

/// The three products of `conv2d.wgsl`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward = 0,
    InputGrad = 1,
    WeightGrad = 2,
}

/// Workgroup tiles (rows per thread, columns per thread, K slice) of 16x16 threads: 64x64,
/// 32x128 and 16x256 outputs.
const TILES: [(u32, u32, u32); 3] = [(4, 4, 16), (2, 8, 16), (1, 16, 8)];

/// The override constants of each of [`TILES`].
const TILE_CONSTANTS: OverrideAxis = &[
    &[
        ("ROWS", TILES[0].0 as f64),
        ("COLS", TILES[0].1 as f64),
        ("TILE_K", TILES[0].2 as f64),
    ],
    &[
        ("ROWS", TILES[1].0 as f64),
        ("COLS", TILES[1].1 as f64),
        ("TILE_K", TILES[1].2 as f64),
    ],
    &[
        ("ROWS", TILES[2].0 as f64),
        ("COLS", TILES[2].1 as f64),
        ("TILE_K", TILES[2].2 as f64),
    ],
];

/// The tile for a GEMM of `m` rows: 64x64 normally, narrower when the GEMM has few rows so that a
/// tile is not mostly empty.
fn tile_shape(m: usize) -> (u32, u32, u32) {
    match m {
        0..=16 => TILES[2],
        17..=32 => TILES[1],
        _ => TILES[0],
    }
}

/// Aim for at least this many workgroups when splitting a weight gradient along K.
const SPLIT_TARGET_GROUPS: usize = 128;
/// Each K chunk of a split weight gradient covers at least this many products.
const MIN_K_CHUNK: usize = 256;
/// ... and at most this many: bounds the loop work of one invocation, which the software Vulkan
/// driver (llvmpipe) silently cuts after 65535 iterations.
const MAX_K_CHUNK: usize = 65536;

/// Aim for at least this many workgroups when splitting a forward product along K.
const FORWARD_TARGET_GROUPS: usize = 256;
/// Each K chunk of a split forward product covers at least this many products.
const MIN_FORWARD_K_CHUNK: usize = 128;

/// Records one launch: `out = mode(lhs, rhs) (+ bias)`. For a product split along K, `out` holds
/// one copy of the result per chunk (see [`forward_chunks`] and [`weight_grad_chunks`]).
fn launch(
    gpu: &Gpu,
    s: &ConvShape,
    mode: Mode,
    lhs: &Tensor,
    rhs: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
) {
    let u = |v: u32| v as usize;
    let (m, tiles_n_size, z_groups) = match mode {
        // the largest phase has ceil(in / stride) pixels per axis
        Mode::InputGrad => (
            u(s.cin),
            u(s.batch) * u(s.in_h).div_ceil(u(s.stride_h)) * u(s.in_w).div_ceil(u(s.stride_w)),
            s.stride_h * s.stride_w,
        ),
        Mode::Forward => (
            u(s.cout),
            u(s.batch * s.out_h * s.out_w),
            forward_chunks(s).0,
        ),
        Mode::WeightGrad => (u(s.cout), u(s.cin * s.k_h * s.k_w), weight_grad_chunks(s).0),
    };
    let (rows, cols, tile_k) = tile_shape(m);
    let kernel = Kernel::new(&SHADER, "conv2d")
        .with("MODE", mode as u32 as f64)
        .flag("HAS_BIAS", bias.is_some())
        .flag("MASKED", s.masked())
        .with("ROWS", rows as f64)
        .with("COLS", cols as f64)
        .with("TILE_K", tile_k as f64);
    let mut params = *s;
    params.z_groups = z_groups;
    params.k_chunk = match mode {
        Mode::Forward => forward_chunks(s).1,
        Mode::WeightGrad => weight_grad_chunks(s).1,
        Mode::InputGrad => u32::MAX,
    };
    let tiles_n = tiles_n_size.div_ceil(16 * cols as usize) as u32;
    let max = gpu.limits().max_compute_workgroups_per_dimension.max(1);
    let x_groups = tiles_n.min(max);
    let workgroups = [
        x_groups,
        m.div_ceil(16 * rows as usize) as u32,
        tiles_n.div_ceil(x_groups) * z_groups,
    ];
    // without a bias the binding still needs a buffer: bind `lhs` again (read-only)
    gpu.dispatch_counted(
        &kernel,
        &params,
        &[
            lhs.bind(LHS),
            rhs.bind(RHS),
            bias.unwrap_or(lhs).bind(BIAS),
            out.bind(OUT),
        ],
        workgroups,
        s.flops(),
    );
}

/// (chunks, K per chunk) of a weight gradient: its GEMM has few output tiles and a long K
/// (batch x output pixels), so K is split to keep enough workgroups busy. The partial sums are
/// added afterwards in a fixed order.
fn weight_grad_chunks(s: &ConvShape) -> (u32, u32) {
    let (rows, cols, tile_k) = tile_shape(s.cout as usize);
    let k = (s.batch * s.out_h * s.out_w) as usize;
    let tiles = (s.cout as usize).div_ceil(16 * rows as usize)
        * ((s.cin * s.k_h * s.k_w) as usize).div_ceil(16 * cols as usize);
    split_k(k, tiles, SPLIT_TARGET_GROUPS, MIN_K_CHUNK, tile_k)
}

/// (chunks, K per chunk) of a forward product: a layer with few output channels and a small
/// batch has few output tiles, so its K (cin x kH x kW) is split to keep enough workgroups busy.
/// The partial results are added afterwards in a fixed order.
fn forward_chunks(s: &ConvShape) -> (u32, u32) {
    let (rows, cols, tile_k) = tile_shape(s.cout as usize);
    let k = (s.cin * s.k_h * s.k_w) as usize;
    let tiles = (s.cout as usize).div_ceil(16 * rows as usize)
        * ((s.batch * s.out_h * s.out_w) as usize).div_ceil(16 * cols as usize);
    split_k(k, tiles, FORWARD_TARGET_GROUPS, MIN_FORWARD_K_CHUNK, tile_k)
}

/// (chunks, K per chunk) for a product of `tiles` output tiles and length `k`: enough chunks for
/// `target` workgroups, each at least `min_chunk` and at most [`MAX_K_CHUNK`] long, a multiple of
/// the K slice `tile_k`.
fn split_k(k: usize, tiles: usize, target: usize, min_chunk: usize, tile_k: u32) -> (u32, u32) {
    let wanted = target
        .div_ceil(tiles.max(1))
        .min(k / min_chunk)
        .max(k.div_ceil(MAX_K_CHUNK))
        .max(1);
    let chunk = k.div_ceil(wanted).div_ceil(tile_k as usize) * tile_k as usize;
    (k.div_ceil(chunk) as u32, chunk as u32)
}

/// Floating-point operations of a conv2d of x by w (each of its three products costs the same).
pub fn conv2d_flops(x: [usize; 4], w: [usize; 4], options: Conv2dOptions) -> f64 {
    ConvShape::of(x, w, &options).flops()
}

/// Gradient of conv2d with respect to its input: dy [N, Cout, OH, OW] and w [Cout, Cin, kH, kW]
/// give dx [N, Cin, H, W] for the input size `x_hw`. No autograd.
pub fn conv2d_input_grad(
    dy: &Tensor,
    w: &Tensor,
    x_hw: (usize, usize),
    options: Conv2dOptions,
) -> Tensor {
    conv2d_input_grad_biased(dy, w, None, x_hw, options)
}

fn conv2d_input_grad_biased(
    dy: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    x_hw: (usize, usize),
    options: Conv2dOptions,
) -> Tensor {
    let s = shape_from_output(
        dims4(dy, "output gradient"),
        dims4(w, "weight"),
        x_hw,
        &options,
    );
    let dx = Tensor::uninit(dy.gpu(), &s.x_shape());
    launch(dy.gpu(), &s, Mode::InputGrad, w, dy, bias, &dx);
    dx
}

/// Gradient of conv2d with respect to its weight: dy [N, Cout, OH, OW] and x [N, Cin, H, W] give
/// dw [Cout, Cin, kH, kW] for the kernel size `k_hw` (zero where the mask drops a position). No autograd.
pub fn conv2d_weight_grad(
    dy: &Tensor,
    x: &Tensor,
    k_hw: (usize, usize),
    options: Conv2dOptions,
) -> Tensor {
    let x4 = dims4(x, "input");
    let dy4 = dims4(dy, "output gradient");
    let s = shape_from_output(
        dy4,
        [dy4[1], x4[1], k_hw.0, k_hw.1],
        (x4[2], x4[3]),
        &options,
    );
    assert_eq!(
        s.x_shape(),
        x4,
        "conv2d weight gradient: batch or channels of x and dy differ"
    );
    let chunks = weight_grad_chunks(&s).0 as usize;
    if chunks == 1 {
        let dw = Tensor::uninit(dy.gpu(), &s.w_shape());
        launch(dy.gpu(), &s, Mode::WeightGrad, dy, x, None, &dw);
        return dw;
    }
    let w = s.w_shape();
    let partial = Tensor::uninit(dy.gpu(), &[chunks, w[0], w[1], w[2], w[3]]);
    launch(dy.gpu(), &s, Mode::WeightGrad, dy, x, None, &partial);
    reduce::sum_axis(&partial, 0)
}

/// y = conv2d(x, w) (+ bias) with no autograd, split along K where [`forward_chunks`] says so.
fn forward(s: &ConvShape, x: &Tensor, w: &Tensor, bias: Option<&Tensor>, rg: bool) -> Tensor {
    let chunks = forward_chunks(s).0 as usize;
    if chunks == 1 {
        let y = Tensor::output(x.gpu(), &s.y_shape(), rg);
        launch(x.gpu(), s, Mode::Forward, w, x, bias, &y);
        return y;
    }
    let y = s.y_shape();
    let partial = Tensor::uninit(x.gpu(), &[chunks, y[0], y[1], y[2], y[3]]);
    launch(x.gpu(), s, Mode::Forward, w, x, bias, &partial);
    let y = reduce::sum_axis(&partial, 0);
    if rg {
        y.with_requires_grad(true)
    } else {
        y
    }
}

/// Records the backward of a conv2d / conv_transpose2d: `grad_x(g)` and `grad_w(g)` for the inputs
/// x and w, and the per-channel sum of `g` for a bias.
fn record_backward(
    inputs: &[&Tensor],
    y: &Tensor,
    grad_x: impl FnOnce(&Tensor) -> Tensor + 'static,
    grad_w: impl FnOnce(&Tensor) -> Tensor + 'static,
) {
    let wants: Vec<bool> = inputs.iter().map(|t| t.requires_grad()).collect();
    autograd::record(inputs, y, move |g| {
        let mut grads = vec![wants[0].then(|| grad_x(g)), wants[1].then(|| grad_w(g))];
        if wants.len() > 2 {
            grads.push(wants[2].then(|| reduce::sum_per_channel(g)));
        }
        grads
    });
}

/// 2-D convolution of x [N, Cin, H, W] with w [Cout, Cin, kH, kW] and optional bias [Cout].
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, options: Conv2dOptions) -> Tensor {
    let (x4, w4) = (dims4(x, "conv2d input"), dims4(w, "conv2d weight"));
    assert_eq!(
        x4[1], w4[1],
        "conv2d: input has {} channels, weight expects {}",
        x4[1], w4[1]
    );
    let s = ConvShape::of(x4, w4, &options);
    let mut inputs = vec![x, w];
    inputs.extend(bias);
    let rg = autograd::needs_grad(&inputs);
    let y = forward(&s, x, w, bias, rg);
    if rg {
        let (x_s, w_s) = (x.detach(), w.detach());
        record_backward(
            &inputs,
            &y,
            move |g| conv2d_input_grad(g, &w_s, (x4[2], x4[3]), options),
            move |g| conv2d_weight_grad(g, &x_s, (w4[2], w4[3]), options),
        );
    }
    y
}

/// Transposed 2-D convolution of x [N, Cin, H, W] with w [Cin, Cout, kH, kW] (IOHW, as PyTorch)
/// and optional bias [Cout]. It is the adjoint of conv2d: its forward is conv2d's input gradient.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    options: ConvTranspose2dOptions,
) -> Tensor {
    let (x4, w4) = (
        dims4(x, "conv_transpose2d input"),
        dims4(w, "conv_transpose2d weight"),
    );
    assert_eq!(
        x4[1], w4[0],
        "conv_transpose2d: input has {} channels, weight expects {}",
        x4[1], w4[0]
    );
    let (st, pad, op) = (options.stride, options.padding, options.output_padding);
    assert!(
        op.0 < st.0 && op.1 < st.1,
        "conv_transpose2d: output padding must be smaller than the stride"
    );
    let out_h = conv_transpose_out_size(x4[2], w4[2], st.0, pad.0, op.0);
    let out_w = conv_transpose_out_size(x4[3], w4[3], st.1, pad.1, op.1);
    let (Some(out_h), Some(out_w)) = (out_h, out_w) else {
        panic!("conv_transpose2d: padding too large for input {x4:?}");
    };
    // the adjoint convolution maps our output [N, Cout, out_h, out_w] to x
    let adjoint = Conv2dOptions {
        stride: st,
        padding: pad,
        mask: None,
    };
    let mut inputs = vec![x, w];
    inputs.extend(bias);
    let rg = autograd::needs_grad(&inputs);
    let y = conv2d_input_grad_biased(x, w, bias, (out_h, out_w), adjoint);
    let y = if rg { y.with_requires_grad(true) } else { y };
    if rg {
        let (x_s, w_s) = (x.detach(), w.detach());
        record_backward(
            &inputs,
            &y,
            move |g| conv2d(g, &w_s, None, adjoint),
            move |g| conv2d_weight_grad(&x_s, g, (w4[2], w4[3]), adjoint),
        );
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_weight_gradients_are_split_into_chunks_covering_k() {
        // the split case of tests/conv.rs: batch 4, 3 -> 5 channels, 20x20, 3x3, padding 1
        let s = ConvShape::of([4, 3, 20, 20], [5, 3, 3, 3], &Conv2dOptions::new(1, 1));
        let (chunks, chunk) = weight_grad_chunks(&s);
        assert_eq!(chunks, 6);
        assert!(chunk % 8 == 0 && (chunks - 1) * chunk < 1600 && chunks * chunk >= 1600);
        // a short K is not split
        let small = ConvShape::of([1, 3, 8, 8], [5, 3, 3, 3], &Conv2dOptions::new(1, 1));
        assert_eq!(weight_grad_chunks(&small).0, 1);
    }

    #[test]
    fn forward_products_with_few_tiles_are_split_along_k() {
        // the VQ-VAE's residual 3x3 conv 128 -> 32 at batch 32 on an 8x8 grid: 16 tiles
        let res = ConvShape::of([32, 128, 8, 8], [32, 128, 3, 3], &Conv2dOptions::new(1, 1));
        assert_eq!(forward_chunks(&res), (9, 128));
        // K = 585 of tests/conv.rs: 4 chunks, the last one shorter
        let odd = ConvShape::of([2, 65, 4, 4], [3, 65, 3, 3], &Conv2dOptions::new(1, 1));
        assert_eq!(forward_chunks(&odd), (4, 152));
        // many tiles: no split
        let wide = ConvShape::of(
            [128, 128, 16, 16],
            [128, 128, 3, 3],
            &Conv2dOptions::new(1, 1),
        );
        assert_eq!(forward_chunks(&wide).0, 1);
    }

    #[test]
    fn tiles_follow_the_number_of_rows() {
        assert_eq!(tile_shape(3), (1, 16, 8));
        assert_eq!(tile_shape(32), (2, 8, 16));
        assert_eq!(tile_shape(33), (4, 4, 16));
    }
}
