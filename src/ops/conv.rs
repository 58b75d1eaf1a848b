//! Host side of `shaders/conv.wgsl`: conv2d (optionally masked) and conv_transpose2d, forward and
//! backward. The transposed convolution is the adjoint of the convolution, so both run on the same
//! three kernels (forward, input gradient, weight gradient) with their roles swapped.

mod columns;
mod lowered;
mod options;
mod products;
mod shape;
mod tiling;
mod windowed;

pub use options::{
    conv_out_size, conv_transpose_out_size, Conv2dOptions, ConvTranspose2dOptions, SpatialMask,
};

use arrayvec::ArrayVec;

use crate::autograd;
use crate::gpu::{profile, Binding, Gpu, Shader};
use crate::ops::{elementwise, reduce, Epilogue};
use crate::tensor::{ReluMark, Tensor};
use products::split_launch;
pub(crate) use shape::dims4;
use shape::{shape_from_output, ConvShape};
use tiling::{k_split, TILE_CONSTANTS};
pub(crate) use windowed::{conv2d_window, window_rows};

/// `shaders/conv.wgsl`: the host uses the three modes and the tile shapes of `tiling::TILES`.
pub static SHADER: Shader = crate::shader!(
    "conv",
    ConvShape,
    [LHS, RHS, BIAS, OUT, RESIDUAL, GATE],
    overrides: [
        &[&[("MODE", 0.0)], &[("MODE", 1.0)], &[("MODE", 2.0)]],
        TILE_CONSTANTS,
    ]
);
const LHS: Binding = Binding::read(1, "lhs");
const RHS: Binding = Binding::read(2, "rhs");
const BIAS: Binding = Binding::read(3, "bias");
const OUT: Binding = Binding::read_write(4, "out");
const RESIDUAL: Binding = Binding::read(5, "residual");
const GATE: Binding = Binding::read(6, "gate");

/// The three products of `conv2d.wgsl`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward = 0,
    InputGrad = 1,
    WeightGrad = 2,
}

/// How [`conv2d`] on `gpu` takes the sums of its output for x dims `x` and weight dims `w` (OIHW):
/// (terms per chunk, kernel positions per input channel). It numbers each output's terms
/// `input channel x positions + kernel position` (the positions a mask keeps where it drops whole
/// trailing rows, otherwise all of them) and splits the sum into chunks of this many terms, summed
/// separately and then added in order (one chunk when this is at least the sum's length). It
/// depends on the device's kernel set and the shape.
pub fn forward_sum_order(
    gpu: &Gpu,
    x: [usize; 4],
    w: [usize; 4],
    options: &Conv2dOptions,
) -> (usize, usize) {
    let s = ConvShape::of(x, w, options);
    let chunk = match lowered::k_split(gpu, &s, Mode::Forward) {
        Some((_, chunk)) => chunk,
        None => k_split(&s, Mode::Forward).1,
    };
    (chunk as usize, s.window_taps() as usize)
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
    conv2d_input_grad_with((dy, w, None), x_hw, options, Epilogue::default())
}

/// [`conv2d_input_grad`] plus a bias per input channel, with `epilogue`'s ReLU or gate.
fn conv2d_input_grad_with(
    (dy, w, bias): (&Tensor, &Tensor, Option<&Tensor>),
    x_hw: (usize, usize),
    options: Conv2dOptions,
    epilogue: Epilogue,
) -> Tensor {
    let s = shape_from_output(
        dims4(dy, "output gradient"),
        dims4(w, "weight"),
        x_hw,
        &options,
    );
    split_launch(&s, Mode::InputGrad, w, dy, bias, &s.x_shape(), epilogue)
}

/// The input of a convolution as the gate of its input gradient, where that input is a ReLU's
/// output (marked [`ReluMark::Output`]): its id, whose gradient the convolution's backward then
/// makes already masked.
fn relu_gate(x: &Tensor) -> Option<u64> {
    (x.relu_mark() == ReluMark::Output).then(|| x.id())
}

/// Marks the input gradient `dx` made with the gate of [`relu_gate`] as masked for that ReLU.
fn masked_for(dx: Tensor, gate: Option<u64>) -> Tensor {
    if let Some(id) = gate {
        dx.set_relu_mark(ReluMark::MaskedFor(id));
    }
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
    weight_grad_into(dy, x, k_hw, options, None)
}

/// [`conv2d_weight_grad`] written into `into` where it is given (a tensor of the weight's shape).
fn weight_grad_into(
    dy: &Tensor,
    x: &Tensor,
    k_hw: (usize, usize),
    options: Conv2dOptions,
    into: Option<&Tensor>,
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
    let epilogue = Epilogue::into(into);
    split_launch(&s, Mode::WeightGrad, dy, x, None, &s.w_shape(), epilogue)
}

/// Where a weight gradient that writes only some kernel positions goes: `into` (autograd's slot,
/// which holds zeros already) where it is given, otherwise a new tensor of `shape` filled with
/// zeros.
fn zeroed_weight_grad(gpu: &Gpu, shape: &[usize; 4], into: Option<&Tensor>) -> Tensor {
    match into {
        Some(into) => Tensor::uninit_or(gpu, shape, Some(into)),
        None => Tensor::zeros(gpu, shape),
    }
}

/// Records the backward of a conv2d / conv_transpose2d `y` of inputs [x, w, bias (where
/// `has_bias`), residual (if any)], with a fused ReLU when `relu`: `grads(g, [x wanted, w wanted],
/// into, pending)` gives the gradients of x and w (those wanted; w's written into `into` where it
/// is given; x's added to the gradient `pending` of x so far if it takes it), the per-channel sum
/// of `g` goes to a bias and `g` itself to a residual. A parameter's zero gradient slot, where
/// autograd offers one, receives its gradient directly.
fn record_backward(
    inputs: &[&Tensor],
    has_bias: bool,
    (y, relu): (&Tensor, bool),
    grads: impl FnOnce(&Tensor, [bool; 2], Option<&Tensor>, &mut Option<Tensor>) -> [Option<Tensor>; 2]
        + 'static,
) {
    let wants: ArrayVec<bool, 4> = inputs.iter().map(|t| t.requires_grad()).collect();
    // after a fused ReLU, the gradient of the convolution's own output (which the op that takes y
    // may have masked already)
    let saved = relu.then(|| elementwise::SavedRelu::of(y));
    autograd::record_into(inputs, y, move |g, offered| {
        let masked = saved.map(|relu| relu.gradient(g));
        let g = masked.as_ref().unwrap_or(g);
        let into = offered[1].slot.clone();
        let pending = &mut offered[0].pending;
        let mut all =
            autograd::Grads::from_iter(grads(g, [wants[0], wants[1]], into.as_ref(), pending));
        if has_bias {
            let slot = offered[2].slot.as_ref();
            all.push(wants[2].then(|| {
                let _part = profile::part("db");
                reduce::sum_per_channel_into(g, slot)
            }));
        }
        if all.len() < wants.len() {
            all.push(wants[all.len()].then(|| g.clone()));
        }
        all
    });
}

/// The epilogue of an input gradient: masked by the ReLU whose output x is (`gate`), or else
/// added to x's gradient so far where autograd offers it (taking it). A masked gradient takes
/// nothing: the mask would apply to the sum.
fn input_grad_epilogue<'a>(
    gate: Option<&'a Tensor>,
    pending: &mut Option<Tensor>,
    taken: &'a mut Option<Tensor>,
) -> Epilogue<'a> {
    if gate.is_some() {
        return Epilogue::gated(gate);
    }
    *taken = pending.take();
    Epilogue::new(taken.as_ref(), false)
}

/// What a convolution does to its result as it stores it: add a residual tensor of the output's
/// shape, then apply a ReLU. The values are those of the separate ops; the output is written once.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fused<'a> {
    /// Added to the output (conv2d only).
    pub residual: Option<&'a Tensor>,
    /// `max(output, 0)`.
    pub relu: bool,
}

impl Fused<'_> {
    /// A ReLU.
    pub const RELU: Fused<'static> = Fused {
        residual: None,
        relu: true,
    };
}

/// 2-D convolution of x [N, Cin, H, W] with w [Cout, Cin, kH, kW] and optional bias [Cout].
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, options: Conv2dOptions) -> Tensor {
    conv2d_fused(x, w, bias, options, Fused::default())
}

/// [`conv2d`] with `fused`'s residual and ReLU applied as the convolution stores its output.
pub fn conv2d_fused(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    options: Conv2dOptions,
    fused: Fused,
) -> Tensor {
    let Fused { residual, relu } = fused;
    let (x4, w4) = (dims4(x, "conv2d input"), dims4(w, "conv2d weight"));
    assert_eq!(
        x4[1], w4[1],
        "conv2d: input has {} channels, weight expects {}",
        x4[1], w4[1]
    );
    let s = ConvShape::of(x4, w4, &options);
    if let Some(r) = residual {
        assert_eq!(
            r.shape(),
            s.y_shape(),
            "conv2d: a residual of shape {:?} for an output of shape {:?}",
            r.shape(),
            s.y_shape()
        );
    }
    let mut inputs = ArrayVec::<&Tensor, 4>::from_iter([x, w]);
    inputs.extend(bias);
    inputs.extend(residual);
    let rg = autograd::needs_grad(&inputs);
    let epilogue = Epilogue::new(residual, relu);
    let (y, columns) = lowered::forward_keeping_columns(&s, (w, x, bias), epilogue, rg);
    if rg {
        let (x_s, w_s) = (x.detach(), w.detach());
        let columns = columns.filter(|_| w.requires_grad());
        let has_bias = bias.is_some();
        let gate = relu_gate(x);
        record_backward(
            &inputs,
            has_bias,
            (&y, relu),
            move |g, [want_x, want_w], into, pending| {
                let dx = want_x.then(|| {
                    let _part = profile::part("dx");
                    let mut taken = None;
                    let epilogue = input_grad_epilogue(gate.map(|_| &x_s), pending, &mut taken);
                    let operands = (g, &w_s, None);
                    let dx = conv2d_input_grad_with(operands, (x4[2], x4[3]), options, epilogue);
                    masked_for(dx, gate)
                });
                let dw = want_w.then(|| {
                    let _part = profile::part("dw");
                    lowered::weight_grad(&s, g, &x_s, columns, options, into)
                });
                [dx, dw]
            },
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
    conv_transpose2d_fused(x, w, bias, options, Fused::default())
}

/// [`conv_transpose2d`] with `fused`'s ReLU applied as the convolution stores its output (it takes
/// no residual).
pub fn conv_transpose2d_fused(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    options: ConvTranspose2dOptions,
    fused: Fused,
) -> Tensor {
    assert!(
        fused.residual.is_none(),
        "conv_transpose2d adds no residual"
    );
    let relu = fused.relu;
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
    let mut inputs = ArrayVec::<&Tensor, 4>::from_iter([x, w]);
    inputs.extend(bias);
    let rg = autograd::needs_grad(&inputs);
    let epilogue = Epilogue::new(None, relu);
    let y = conv2d_input_grad_with((x, w, bias), (out_h, out_w), adjoint, epilogue);
    let y = y.requiring_grad_if(rg);
    if rg {
        let (x_s, w_s) = (x.detach(), w.detach());
        // dx is the convolution of g by w; on the CPU set the columns of g it makes serve dw too
        let has_bias = bias.is_some();
        let gate = relu_gate(x);
        record_backward(
            &inputs,
            has_bias,
            (&y, relu),
            move |g, [want_x, want_w], into, pending| {
                let s = ConvShape::of(dims4(g, "output gradient"), w4, &adjoint);
                let (dx, columns) = match want_x {
                    true => {
                        let _part = profile::part("dx");
                        let operands = (&w_s, g, None);
                        let mut taken = None;
                        let epilogue = input_grad_epilogue(gate.map(|_| &x_s), pending, &mut taken);
                        let (dx, columns) =
                            lowered::forward_keeping_columns(&s, operands, epilogue, false);
                        (Some(masked_for(dx, gate)), columns)
                    }
                    false => (None, None),
                };
                let dw = want_w.then(|| {
                    let _part = profile::part("dw");
                    lowered::weight_grad(&s, &x_s, g, columns, adjoint, into)
                });
                [dx, dw]
            },
        );
    }
    y
}
