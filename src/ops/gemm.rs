//! Host side of `shaders/gemm.wgsl`: matrix products with optional transposes, and the linear layer
//! `x W^T + b` with the bias fused into the GEMM epilogue.

use crate::autograd;
use crate::gpu::{Binding, Kernel, KernelSet, Shader};
use crate::ops::blocked::{self, BiasPer, Layout, Product, NO_WRAP};
use crate::ops::{reduce, Epilogue};
use crate::tensor::Tensor;

/// Output tile edge of the GEMM kernel.
const TILE: usize = 64;

/// `shaders/gemm.wgsl`.
pub static SHADER: Shader = crate::shader!("gemm", Params, [A, B, BIAS, C]);
const A: Binding = Binding::read(1, "a");
const B: Binding = Binding::read(2, "b");
const BIAS: Binding = Binding::read(3, "bias");
const C: Binding = Binding::read_write(4, "c");

crate::uniform_params! {
    struct Params {
        m: u32,
        n: u32,
        k: u32,
        _pad: u32,
    }
}

/// (rows, cols) of `op(t)` for a 2-D tensor.
fn op_dims(t: &Tensor, transposed: bool, name: &str) -> (usize, usize) {
    assert_eq!(
        t.shape().len(),
        2,
        "matmul: {name} must be 2-D, got {:?}",
        t.shape()
    );
    let (r, c) = (t.dim(0), t.dim(1));
    if transposed {
        (c, r)
    } else {
        (r, c)
    }
}

/// Records `out = op(a) op(b) (+ bias)` with no autograd.
fn launch(
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    trans_a: bool,
    trans_b: bool,
) {
    let (m, k) = op_dims(a, trans_a, "a");
    let (k2, n) = op_dims(b, trans_b, "b");
    assert_eq!(
        k,
        k2,
        "matmul: inner sizes differ ({:?} x {:?})",
        a.shape(),
        b.shape()
    );
    assert_eq!(out.shape(), [m, n], "matmul: output shape");
    let kernel = Kernel::new(&SHADER, "gemm")
        .flag("TRANS_A", trans_a)
        .flag("TRANS_B", trans_b)
        .flag("HAS_BIAS", bias.is_some());
    let params = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        _pad: 0,
    };
    let gpu = a.gpu();
    // without a bias the binding still needs a buffer: bind `a` again (read-only)
    let bias_arg = bias.unwrap_or(a).bind(BIAS);
    gpu.dispatch_counted(
        &kernel,
        &params,
        &[a.bind(A), b.bind(B), bias_arg, out.bind(C)],
        [n.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32, 1],
        2.0 * (m * n * k) as f64,
    );
}

/// `op(a) op(b) (+ bias)` on `blocked.wgsl` (the CPU set), with no autograd, written into `into`
/// where it is given; `None` (nothing recorded) when the launch would not fit the adapter.
fn product_blocked(
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    trans_a: bool,
    trans_b: bool,
    into: Option<&Tensor>,
) -> Option<Tensor> {
    let (m, k) = op_dims(a, trans_a, "a");
    let n = op_dims(b, trans_b, "b").1;
    let p = Product {
        m,
        n,
        k,
        a: if trans_a {
            Layout {
                major: 1,
                minor: m as u32,
                inner: NO_WRAP,
                outer: 0,
            }
        } else {
            Layout::rows(k)
        },
        // B(k, n) = b[n * k_len + k] when transposed: blocks of one column, k_len apart
        b: if trans_b {
            Layout {
                major: 1,
                minor: 1,
                inner: 1,
                outer: k as u32,
            }
        } else {
            Layout::rows(n)
        },
        c: Layout::rows(n),
    };
    if !p.fits(a.gpu()) {
        return None;
    }
    let bias = bias.map(|t| (t, BiasPer::Column));
    let flops = 2.0 * (m * n * k) as f64;
    Some(blocked::product(
        &p,
        a,
        b,
        bias,
        &[m, n],
        flops,
        Epilogue::into(into),
    ))
}

/// `op(a) @ op(b) (+ bias)` as a new tensor (requiring gradients when `requires_grad`), or
/// written into `into` where it is given (then with no autograd).
fn product(
    a: &Tensor,
    b: &Tensor,
    (trans_a, trans_b): (bool, bool),
    bias: Option<&Tensor>,
    requires_grad: bool,
    into: Option<&Tensor>,
) -> Tensor {
    let (m, k) = op_dims(a, trans_a, "a");
    let (k2, n) = op_dims(b, trans_b, "b");
    assert!(
        !(requires_grad && into.is_some()),
        "a product written into a given tensor has no autograd"
    );
    if a.gpu().kernel_set() == KernelSet::Cpu && k == k2 {
        if let Some(out) = product_blocked(a, b, bias, trans_a, trans_b, into) {
            return if requires_grad {
                out.with_requires_grad(true)
            } else {
                out
            };
        }
    }
    let out = Tensor::output_or(a.gpu(), &[m, n], requires_grad, into);
    launch(a, b, bias, &out, trans_a, trans_b);
    out
}

/// `op(a) @ op(b)` for 2-D tensors, where `op` transposes when its flag is set.
pub fn matmul(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Tensor {
    let rg = autograd::needs_grad(&[a, b]);
    let out = product(a, b, (trans_a, trans_b), None, rg, None);
    if rg {
        let (a_s, b_s) = (a.detach(), b.detach());
        let (ga, gb) = (a.requires_grad(), b.requires_grad());
        autograd::record(&[a, b], &out, move |g| {
            // C = A'B' with A' = op(A), B' = op(B): dA' = dC B'^T, dB' = A'^T dC
            let grad_a = ga.then(|| {
                if trans_a {
                    matmul(&b_s, g, trans_b, true)
                } else {
                    matmul(g, &b_s, false, !trans_b)
                }
            });
            let grad_b = gb.then(|| {
                if trans_b {
                    matmul(g, &a_s, true, trans_a)
                } else {
                    matmul(&a_s, g, !trans_a, false)
                }
            });
            vec![grad_a, grad_b]
        });
    }
    out
}

/// `x @ w^T + bias` for x [B, in], w [out, in], bias [out] (PyTorch `nn.Linear`).
pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Tensor {
    if let Some(b) = bias {
        assert_eq!(
            b.shape(),
            [w.dim(0)],
            "linear: bias shape {:?} for weight {:?}",
            b.shape(),
            w.shape()
        );
    }
    let mut inputs = vec![x, w];
    inputs.extend(bias);
    let rg = autograd::needs_grad(&inputs);
    let out = product(x, w, (false, true), bias, rg, None);
    if rg {
        let (x_s, w_s) = (x.detach(), w.detach());
        let (gx, gw, gb) = (
            x.requires_grad(),
            w.requires_grad(),
            bias.is_some_and(Tensor::requires_grad),
        );
        let has_bias = bias.is_some();
        // the weight's and the bias's gradients go straight into their zero slots where offered
        autograd::record_into(&inputs, &out, move |g, slots| {
            let mut grads = vec![
                gx.then(|| matmul(g, &w_s, false, false)),
                gw.then(|| product(g, &x_s, (true, false), None, false, slots[1].as_ref())),
            ];
            if has_bias {
                grads.push(gb.then(|| reduce::sum_per_channel_into(g, slots[2].as_ref())));
            }
            grads
        });
    }
    out
}

impl Tensor {
    /// Matrix product `self @ other` of 2-D tensors.
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        matmul(self, other, false, false)
    }
}
