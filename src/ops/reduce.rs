//! Host side of `shaders/reduce.wgsl`: deterministic sums and means (over everything, over one axis,
//! per channel) and the MSE loss. Full reductions run as per-workgroup partials plus a final pass.

use arrayvec::ArrayVec;
use smallvec::smallvec;

use crate::autograd;
use crate::gpu::{Binding, Kernel, KernelSet, Shader, CPU_LOOP_LIMIT};
use crate::ops::collective;
use crate::ops::{elementwise, Epilogue};
use crate::tensor::{Shape, Tensor};

/// Elements each workgroup of the first pass sums, at least.
const MIN_CHUNK: usize = 1024;
/// Most partial sums the first pass produces (the final pass is one workgroup).
const MAX_PARTIALS: usize = 256;

/// `shaders/reduce.wgsl`.
pub static SHADER: Shader = crate::shader!("reduce", Params, [A, B, OUT, G, A_TEX])
    .with_library(&collective::LIBRARY)
    .reading_copies(crate::ops::texel::SOURCE);
const A: Binding = Binding::read(1, "a");
const B: Binding = Binding::read(2, "b");
const OUT: Binding = Binding::read_write(3, "out");
const G: Binding = Binding::read(4, "g");
const A_TEX: Binding = Binding::texture(5, "a_tex");

crate::uniform_params! {
    #[derive(Default)]
    struct Params {
        n: u32,
        chunk: u32,
        outer: u32,
        mid: u32,
        inner: u32,
        relu: u32,
        scale: f32,
        add: u32,
        gate: u32,
        run: u32,
        run_stride: u32,
        _pad: u32,
    }
}

/// Two-pass reduction of `entry` over `a` (and `b`): partial sums, then their sum times `scale`.
fn reduce_all(
    entry: &'static str,
    a: &Tensor,
    b: Option<&Tensor>,
    scale: f32,
    requires_grad: bool,
) -> Tensor {
    let gpu = a.gpu();
    let n = a.numel();
    let groups = n.div_ceil(MIN_CHUNK).clamp(1, MAX_PARTIALS);
    let chunk = n.div_ceil(groups);
    let partials = Tensor::uninit(gpu, &[groups]);
    let mut args = ArrayVec::<_, 3>::from_iter([a.bind(A), partials.bind(OUT)]);
    args.extend(b.map(|t| t.bind(B)));
    let first = Params {
        n: n as u32,
        chunk: chunk as u32,
        scale: 1.0,
        ..Params::default()
    };
    gpu.run(&SHADER, entry, &first, &args, gpu.grid(groups as u32));
    let out = Tensor::output(gpu, &[1], requires_grad);
    let last = Params {
        n: groups as u32,
        chunk: groups as u32,
        scale,
        ..Params::default()
    };
    gpu.run(
        &SHADER,
        "sum_chunks",
        &last,
        &[partials.bind(A), out.bind(OUT)],
        [1, 1, 1],
    );
    out
}

/// Sum of all elements, shape [1].
pub fn sum(x: &Tensor) -> Tensor {
    scaled_sum(x, 1.0)
}

/// Mean of all elements, shape [1].
pub fn mean(x: &Tensor) -> Tensor {
    scaled_sum(x, 1.0 / x.numel() as f32)
}

fn scaled_sum(x: &Tensor, scale: f32) -> Tensor {
    let rg = autograd::needs_grad(&[x]);
    let out = reduce_all("sum_chunks", x, None, scale, rg);
    if rg {
        let shape = x.shape().to_vec();
        autograd::record(&[x], &out, move |g| {
            smallvec![Some(elementwise::broadcast_scalar(g, &shape, scale))]
        });
    }
    out
}

/// Mean squared error `mean((a - b)^2)`, shape [1]; gradients flow to both sides.
pub fn mse_loss(a: &Tensor, b: &Tensor) -> Tensor {
    assert_eq!(
        a.shape(),
        b.shape(),
        "mse_loss: shapes {:?} and {:?} differ",
        a.shape(),
        b.shape()
    );
    let rg = autograd::needs_grad(&[a, b]);
    let n = a.numel();
    let out = reduce_all("sq_diff_chunks", a, Some(b), 1.0 / n as f32, rg);
    if rg {
        let (a_saved, b_saved) = (a.detach(), b.detach());
        let (ga, gb) = (a.requires_grad(), b.requires_grad());
        autograd::record(&[a, b], &out, move |g| {
            let gpu = g.gpu();
            let grad_a = Tensor::uninit(gpu, a_saved.shape());
            let params = Params {
                n: n as u32,
                scale: 2.0 / n as f32,
                ..Params::default()
            };
            gpu.run(
                &SHADER,
                "mse_backward",
                &params,
                &[
                    a_saved.bind(A),
                    b_saved.bind(B),
                    grad_a.bind(OUT),
                    g.bind(G),
                ],
                gpu.grid_for(n),
            );
            let grad_b = gb.then(|| elementwise::scale(&grad_a, -1.0));
            smallvec![ga.then_some(grad_a), grad_b]
        });
    }
    out
}

/// Splits `shape` around `axis` into (outer, mid, inner) extents.
fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    assert!(
        axis < shape.len(),
        "axis {axis} out of range for shape {shape:?}"
    );
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// Sum over `axis` (the axis is removed from the shape).
pub fn sum_axis(x: &Tensor, axis: usize) -> Tensor {
    scaled_sum_axis(x, axis, 1.0, Epilogue::default())
}

/// [`sum_axis`] with an epilogue (a given output tensor of the sum's size, a residual, a ReLU, a
/// gate); no autograd.
pub(crate) fn sum_axis_with(x: &Tensor, axis: usize, epilogue: Epilogue) -> Tensor {
    scaled_sum_axis(x, axis, 1.0, epilogue)
}

/// Mean over `axis` (the axis is removed from the shape).
pub fn mean_axis(x: &Tensor, axis: usize) -> Tensor {
    scaled_sum_axis(x, axis, 1.0 / x.shape()[axis] as f32, Epilogue::default())
}

fn scaled_sum_axis(x: &Tensor, axis: usize, scale: f32, epilogue: Epilogue) -> Tensor {
    let (outer, mid, inner) = split_at_axis(x.shape(), axis);
    let mut shape = Shape::from(x.shape());
    shape.remove(axis);
    if shape.is_empty() {
        shape.push(1);
    }
    let rg = autograd::needs_grad(&[x]);
    assert!(
        !(rg && (epilogue.relu || epilogue.residual.is_some() || epilogue.gate.is_some())),
        "a sum with an epilogue has no autograd"
    );
    let out = Tensor::output_or(x.gpu(), &shape, rg, epilogue.into);
    epilogue.check_operands(&shape);
    let params = Params {
        n: (outer * inner) as u32,
        outer: outer as u32,
        mid: mid as u32,
        inner: inner as u32,
        relu: epilogue.relu_flag(),
        scale,
        add: epilogue.add_flag(),
        gate: epilogue.gate_flag(),
        ..Params::default()
    };
    let gpu = x.gpu();
    // without a residual or a gate its binding reads x again
    let args = [
        x.bind(A),
        out.bind(OUT),
        epilogue.residual.unwrap_or(x).bind(B),
        epilogue.gate.unwrap_or(x).bind(G),
    ];
    gpu.run(
        &SHADER,
        "sum_mid",
        &params,
        &args,
        gpu.grid_for(outer * inner),
    );
    if rg {
        let in_shape = x.shape().to_vec();
        autograd::record(&[x], &out, move |g| {
            smallvec![Some(elementwise::broadcast_axis(
                g, &in_shape, mid, inner, scale,
            ))]
        });
    }
    out
}

/// Sums `partial` [chunks, n] over its first axis into `out`, element i at
/// `(i / run) * stride + i % run`: runs of `run` sums `stride` apart, the rest of `out` left as it
/// is. No autograd.
pub(crate) fn sum_chunks_into_runs(partial: &Tensor, (run, stride): (usize, usize), out: &Tensor) {
    let [chunks, n] = *partial.shape() else {
        panic!(
            "sum_chunks_into_runs: partial results of shape {:?}",
            partial.shape()
        );
    };
    assert!(
        run > 0 && run <= stride && n % run == 0 && n / run * stride <= out.numel(),
        "sum_chunks_into_runs: {n} sums in runs of {run}, {stride} apart, into {} elements",
        out.numel()
    );
    let params = Params {
        n: n as u32,
        outer: 1,
        mid: chunks as u32,
        inner: n as u32,
        scale: 1.0,
        run: run as u32,
        run_stride: stride as u32,
        ..Params::default()
    };
    let gpu = partial.gpu();
    // no residual and no gate: their bindings read the partial results again
    let args = [
        partial.bind(A),
        out.bind(OUT),
        partial.bind(B),
        partial.bind(G),
    ];
    gpu.run(&SHADER, "sum_mid", &params, &args, gpu.grid_for(n));
}

/// Sum over every axis but axis 1: [N, C, ...] -> [C] (the gradient of a per-channel bias).
pub fn sum_per_channel(x: &Tensor) -> Tensor {
    sum_per_channel_into(x, None)
}

/// [`sum_per_channel`] written into `into` where it is given (a tensor of C elements; no
/// autograd).
pub(crate) fn sum_per_channel_into(x: &Tensor, into: Option<&Tensor>) -> Tensor {
    let (outer, mid, inner) = split_at_axis(x.shape(), 1);
    let rg = autograd::needs_grad(&[x]);
    let out = Tensor::output_or(x.gpu(), &[mid], rg, into);
    let params = Params {
        outer: outer as u32,
        mid: mid as u32,
        inner: inner as u32,
        scale: 1.0,
        ..Params::default()
    };
    let gpu = x.gpu();
    // the same bits either way: one workgroup per channel, or on the CPU set one invocation,
    // looping once per term
    let args = [x.bind(A), out.bind(OUT)];
    if gpu.kernel_set() == KernelSet::Cpu && outer * inner <= CPU_LOOP_LIMIT {
        // reading x from a texture copy where the device makes one
        let groups = gpu.grid(mid.div_ceil(8) as u32);
        gpu.dispatch_reading_copies(
            (Kernel::new(&SHADER, "sum_outer_inner_serial"), &params),
            &args,
            ([(A, A_TEX)], true),
            [groups; 2],
            0.0,
        );
    } else {
        gpu.run(
            &SHADER,
            "sum_outer_inner",
            &params,
            &args,
            gpu.grid(mid as u32),
        );
    }
    if rg {
        let in_shape = x.shape().to_vec();
        autograd::record(&[x], &out, move |g| {
            // d out[m] / d x[o, m, i] = 1: spread g over i, then over o
            let per_channel = elementwise::broadcast_axis(g, &[mid * inner], inner, 1, 1.0);
            let full =
                elementwise::broadcast_axis(&per_channel, &in_shape, outer, mid * inner, 1.0);
            smallvec![Some(full)]
        });
    }
    out
}

impl Tensor {
    /// Sum of all elements, shape [1].
    pub fn sum(&self) -> Tensor {
        sum(self)
    }

    /// Mean of all elements, shape [1].
    pub fn mean(&self) -> Tensor {
        mean(self)
    }
}
