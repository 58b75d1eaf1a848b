//! Host side of `shaders/elementwise.wgsl`: fill, copy, add (with per-channel bias broadcasting),
//! mul, scale, ReLU, sigmoid, tanh, the fused tanh-sigmoid gate and channel concatenation, with
//! their backward passes; bytes looked up in a table (a batch of u8 images into model inputs).

use arrayvec::ArrayVec;
use smallvec::smallvec;

use crate::autograd;
use crate::gpu::{Binding, BufferArg, Kernel, Shader};
use crate::tensor::{ByteBuffer, ReluMark, Tensor};

mod channels;
pub use channels::concat_channels;
pub(crate) use channels::kernel_window;

/// `shaders/elementwise.wgsl`.
pub static SHADER: Shader = crate::shader!("elementwise", Params, [A, B, OUT, BYTES, A_TEX, B_TEX])
    .reading_copies(crate::ops::texel::SOURCE);
const A: Binding = Binding::read(1, "a");
const B: Binding = Binding::read(2, "b");
const OUT: Binding = Binding::read_write(3, "out");
const BYTES: Binding = Binding::read(4, "bytes");
const A_TEX: Binding = Binding::texture(5, "a_tex");
const B_TEX: Binding = Binding::texture(6, "b_tex");

/// The fewest elements for which a kernel that works by units reads texture copies: below it, the
/// copies (and the compute pass each one ends) cost more than they save.
const FEWEST_COPIED: usize = 4096;

crate::uniform_params! {
    struct Params {
        n: u32,
        inner: u32,
        channels: u32,
        _pad: u32,
        alpha: f32,
        beta: f32,
        total: u32,
        offset: u32,
    }
}

impl Params {
    fn new(n: usize, alpha: f32, beta: f32) -> Self {
        Self {
            n: n as u32,
            inner: 1,
            channels: 1,
            _pad: 0,
            alpha,
            beta,
            total: 0,
            offset: 0,
        }
    }
}

/// The storage bindings of a launch writing `out` and reading `a` and `b` where given.
fn buffer_args<'a>(
    out: &'a Tensor,
    a: Option<&'a Tensor>,
    b: Option<&'a Tensor>,
) -> ArrayVec<BufferArg<'a>, 3> {
    let mut args = ArrayVec::new();
    args.push(out.bind(OUT));
    args.extend(a.map(|t| t.bind(A)));
    args.extend(b.map(|t| t.bind(B)));
    args
}

/// Launches `entry` writing `out`, reading `a` and `b` where given, one element a thread.
fn launch(
    entry: &'static str,
    out: &Tensor,
    a: Option<&Tensor>,
    b: Option<&Tensor>,
    params: Params,
) {
    let gpu = out.gpu();
    let args = buffer_args(out, a, b);
    gpu.run(
        &SHADER,
        entry,
        &params,
        &args,
        gpu.grid_for(params.n as usize),
    );
}

/// [`launch`] of a kernel that works by units (`TEX` in the WGSL): four elements a thread,
/// reading a and b from texture copies, where `copies` holds (the shape allows it), there are
/// at least [`FEWEST_COPIED`] elements and the device makes copies; else one element a thread.
fn launch_units(
    (entry, copies): (&'static str, bool),
    out: &Tensor,
    a: Option<&Tensor>,
    b: Option<&Tensor>,
    params: Params,
) {
    let gpu = out.gpu();
    let n = params.n as usize;
    gpu.dispatch_reading_copies(
        (Kernel::new(&SHADER, entry), &params),
        &buffer_args(out, a, b),
        ([(A, A_TEX), (B, B_TEX)], copies && n >= FEWEST_COPIED),
        [gpu.grid_for(n), gpu.grid_for(n.div_ceil(4))],
        0.0,
    );
}

/// New tensor `entry(a, b)` with the shape of `a`, no autograd.
fn map(
    entry: &'static str,
    a: &Tensor,
    b: Option<&Tensor>,
    alpha: f32,
    beta: f32,
    requires_grad: bool,
) -> Tensor {
    let out = Tensor::output(a.gpu(), a.shape(), requires_grad);
    let params = Params::new(a.numel(), alpha, beta);
    launch_units((entry, true), &out, Some(a), b, params);
    out
}

fn same_shape(a: &Tensor, b: &Tensor, op: &str) {
    assert_eq!(
        a.shape(),
        b.shape(),
        "{op}: shapes {:?} and {:?} differ",
        a.shape(),
        b.shape()
    );
}

/// Writes `table[byte i of bytes]` into element i of `out`, for every element of `out` (no
/// autograd): u8 images become model inputs on the GPU with exactly the host's values.
pub fn lookup_bytes(bytes: &ByteBuffer, table: &Tensor, out: &Tensor) {
    assert_eq!(table.numel(), 256, "a byte table has 256 entries");
    assert_eq!(bytes.len(), out.numel(), "one byte per output element");
    let params = Params::new(out.numel(), 0.0, 0.0);
    let gpu = out.gpu();
    gpu.run(
        &SHADER,
        "lookup_bytes",
        &params,
        &[out.bind(OUT), table.bind(A), bytes.bind(BYTES)],
        gpu.grid_for(out.numel()),
    );
}

/// Sets every element of `t` to `value` in place (no autograd).
pub fn fill(t: &Tensor, value: f32) {
    launch("fill", t, None, None, Params::new(t.numel(), value, 0.0));
}

/// `dst += alpha * src` in place (no autograd; used for gradient accumulation).
pub fn accumulate(dst: &Tensor, src: &Tensor, alpha: f32) {
    same_shape(dst, src, "accumulate");
    launch_units(
        ("accumulate", true),
        dst,
        Some(src),
        None,
        Params::new(dst.numel(), alpha, 0.0),
    );
}

/// A copy with its own storage; gradients flow through.
pub fn copy(x: &Tensor) -> Tensor {
    let rg = autograd::needs_grad(&[x]);
    let out = map("copy", x, None, 1.0, 0.0, rg);
    if rg {
        autograd::record(&[x], &out, |g| smallvec![Some(g.clone())]);
    }
    out
}

/// `alpha * a + beta * b` for tensors of one shape.
pub fn add_scaled(a: &Tensor, b: &Tensor, alpha: f32, beta: f32) -> Tensor {
    same_shape(a, b, "add");
    let rg = autograd::needs_grad(&[a, b]);
    let out = map("add", a, Some(b), alpha, beta, rg);
    if rg {
        let (ga, gb) = (a.requires_grad(), b.requires_grad());
        autograd::record(&[a, b], &out, move |g| {
            let part = |needed: bool, s: f32| {
                needed.then(|| if s == 1.0 { g.clone() } else { scale(g, s) })
            };
            smallvec![part(ga, alpha), part(gb, beta)]
        });
    }
    out
}

/// `a + b`. If `b` is 1-D with one value per channel of `a` (dim 1), it is broadcast as a bias.
pub fn add(a: &Tensor, b: &Tensor) -> Tensor {
    if b.shape().len() == 1 && a.shape().len() >= 2 && a.shape() != b.shape() {
        return add_bias(a, b);
    }
    add_scaled(a, b, 1.0, 1.0)
}

/// `a - b`.
pub fn sub(a: &Tensor, b: &Tensor) -> Tensor {
    add_scaled(a, b, 1.0, -1.0)
}

/// `x + bias[c]` for x of shape [N, C, ...] and bias of shape [C].
pub fn add_bias(x: &Tensor, bias: &Tensor) -> Tensor {
    assert!(
        x.shape().len() >= 2 && bias.shape() == [x.dim(1)],
        "add_bias: bias {:?} does not match channels of {:?}",
        bias.shape(),
        x.shape()
    );
    let rg = autograd::needs_grad(&[x, bias]);
    let out = Tensor::output(x.gpu(), x.shape(), rg);
    let mut params = Params::new(x.numel(), 1.0, 0.0);
    params.channels = x.dim(1) as u32;
    params.inner = x.shape()[2..].iter().product::<usize>() as u32;
    launch("add_bias", &out, Some(x), Some(bias), params);
    if rg {
        let (gx, gb) = (x.requires_grad(), bias.requires_grad());
        autograd::record(&[x, bias], &out, move |g| {
            smallvec![
                gx.then(|| g.clone()),
                gb.then(|| super::reduce::sum_per_channel(g)),
            ]
        });
    }
    out
}

/// Elementwise product of tensors of one shape.
pub fn mul(a: &Tensor, b: &Tensor) -> Tensor {
    same_shape(a, b, "mul");
    let rg = autograd::needs_grad(&[a, b]);
    let out = map("mul", a, Some(b), 1.0, 0.0, rg);
    if rg {
        let (a_saved, b_saved) = (a.detach(), b.detach());
        let (ga, gb) = (a.requires_grad(), b.requires_grad());
        autograd::record(&[a, b], &out, move |g| {
            smallvec![ga.then(|| mul(g, &b_saved)), gb.then(|| mul(g, &a_saved))]
        });
    }
    out
}

/// `alpha * x + beta`.
pub fn affine(x: &Tensor, alpha: f32, beta: f32) -> Tensor {
    let rg = autograd::needs_grad(&[x]);
    let out = map("scale", x, None, alpha, beta, rg);
    if rg {
        autograd::record(&[x], &out, move |g| smallvec![Some(scale(g, alpha))]);
    }
    out
}

/// `alpha * x`.
pub fn scale(x: &Tensor, alpha: f32) -> Tensor {
    affine(x, alpha, 0.0)
}

/// An activation whose backward needs only its output `y`.
fn activation(x: &Tensor, forward: &'static str, backward: &'static str) -> Tensor {
    let rg = autograd::needs_grad(&[x]);
    let y = map(forward, x, None, 1.0, 0.0, rg);
    if rg {
        let y_saved = y.detach();
        autograd::record(&[x], &y, move |g| {
            smallvec![Some(map(backward, &y_saved, Some(g), 1.0, 0.0, false))]
        });
    }
    y
}

/// The gradient through a ReLU from its output `y` and the gradient `g` of that output: `g` where
/// `y > 0`, else 0 (no autograd).
fn relu_gradient(y: &Tensor, g: &Tensor) -> Tensor {
    same_shape(y, g, "relu_gradient");
    map("relu_backward", y, Some(g), 1.0, 0.0, false)
}

/// A ReLU's output as its backward keeps it: the values, and the id of the tensor whose gradient
/// a kernel may already have masked (see [`ReluMark`]).
pub(crate) struct SavedRelu {
    y: Tensor,
    id: u64,
}

impl SavedRelu {
    /// Marks `y` as the output of a ReLU whose backward masks its gradient
    /// ([`ReluMark::Output`]), so that an op taking `y` may mask the gradient it makes for it, and
    /// keeps what that backward needs.
    pub fn of(y: &Tensor) -> Self {
        y.set_relu_mark(ReluMark::Output);
        Self {
            y: y.detach(),
            id: y.id(),
        }
    }

    /// The gradient through the ReLU from the gradient `g` of its output: `g` itself where the
    /// kernel that made it kept it only where the output is positive (marked
    /// [`ReluMark::MaskedFor`] this output), else [`relu_gradient`]. Either way the same values.
    pub fn gradient(&self, g: &Tensor) -> Tensor {
        if g.relu_mark() == ReluMark::MaskedFor(self.id) {
            g.clone()
        } else {
            relu_gradient(&self.y, g)
        }
    }
}

/// `max(x, 0)`.
pub fn relu(x: &Tensor) -> Tensor {
    let rg = autograd::needs_grad(&[x]);
    let y = map("relu", x, None, 1.0, 0.0, rg);
    if rg {
        let saved = SavedRelu::of(&y);
        autograd::record(&[x], &y, move |g| smallvec![Some(saved.gradient(g))]);
    }
    y
}

/// `1 / (1 + exp(-x))`.
pub fn sigmoid(x: &Tensor) -> Tensor {
    activation(x, "sigmoid", "sigmoid_backward")
}

/// Hyperbolic tangent.
pub fn tanh(x: &Tensor) -> Tensor {
    activation(x, "tanh_forward", "tanh_backward")
}

/// The gated activation `tanh(a) * sigmoid(b)` of Gated PixelCNN, where `a` and `b` are the first and
/// second halves of the channels of x [N, 2C, ...]; returns [N, C, ...]. One fused kernel each way.
pub fn gate(x: &Tensor) -> Tensor {
    assert!(
        x.shape().len() >= 2 && x.dim(1).is_multiple_of(2),
        "gate: x must be [N, 2C, ...], got {:?}",
        x.shape()
    );
    let mut shape = x.shape().to_vec();
    shape[1] /= 2;
    let mut params = Params::new(x.numel() / 2, 1.0, 0.0);
    params.channels = shape[1] as u32;
    params.inner = shape[2..].iter().product::<usize>() as u32;
    let rg = autograd::needs_grad(&[x]);
    let out = Tensor::output(x.gpu(), &shape, rg);
    // a unit's four elements lie side by side in both halves when a half's plane has whole units
    let whole = (params.channels * params.inner).is_multiple_of(4);
    launch_units(("gate", whole), &out, Some(x), None, params);
    if rg {
        let (x_saved, x_shape) = (x.detach(), x.shape().to_vec());
        autograd::record(&[x], &out, move |g| {
            let dx = Tensor::uninit(g.gpu(), &x_shape);
            launch_units(
                ("gate_backward", whole),
                &dx,
                Some(&x_saved),
                Some(g),
                params,
            );
            smallvec![Some(dx)]
        });
    }
    out
}

/// A tensor of `shape` filled with `alpha * s[0]` (backward of a full reduction).
pub(crate) fn broadcast_scalar(s: &Tensor, shape: &[usize], alpha: f32) -> Tensor {
    let out = Tensor::uninit(s.gpu(), shape);
    launch(
        "broadcast_scalar",
        &out,
        Some(s),
        None,
        Params::new(out.numel(), alpha, 0.0),
    );
    out
}

/// `out[o, m, i] = alpha * g[o, i]` for `m < mid` (backward of a sum over one axis).
pub(crate) fn broadcast_axis(
    g: &Tensor,
    shape: &[usize],
    mid: usize,
    inner: usize,
    alpha: f32,
) -> Tensor {
    let out = Tensor::uninit(g.gpu(), shape);
    let mut params = Params::new(out.numel(), alpha, 0.0);
    params.channels = mid as u32;
    params.inner = inner as u32;
    launch("broadcast_axis", &out, Some(g), None, params);
    out
}

impl Tensor {
    /// `self + other` (see [`add`]).
    pub fn add(&self, other: &Tensor) -> Tensor {
        add(self, other)
    }

    /// `self - other`.
    pub fn sub(&self, other: &Tensor) -> Tensor {
        sub(self, other)
    }

    /// Elementwise `self * other`.
    pub fn mul(&self, other: &Tensor) -> Tensor {
        mul(self, other)
    }

    /// `alpha * self`.
    pub fn scale(&self, alpha: f32) -> Tensor {
        scale(self, alpha)
    }

    /// `max(self, 0)`.
    pub fn relu(&self) -> Tensor {
        relu(self)
    }

    /// Logistic sigmoid.
    pub fn sigmoid(&self) -> Tensor {
        sigmoid(self)
    }

    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Tensor {
        tanh(self)
    }
}
