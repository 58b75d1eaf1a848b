//! Host side of `shaders/gemm.wgsl`: matrix products with optional transposes, and the linear layer
//! `x W^T + b` with the bias fused into the GEMM epilogue.

use arrayvec::ArrayVec;
use smallvec::smallvec;

use crate::autograd;
use crate::gpu::{Binding, Kernel, KernelSet, Shader};
use crate::ops::blocked::{self, BLayout, BiasPer, Layout, Product, NO_WRAP};
use crate::ops::{reduce, Epilogue};
use crate::tensor::Tensor;

/// Products with at least this many 128x128 tiles run on them (`gemm_wide`): enough workgroups
/// to fill a large GPU about twice over.
const WIDE_MIN_TILES: usize = 256;

/// The output tile of a `gemm.wgsl` workgroup. Both tiles add each output's products in the same
/// order, so they give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmTile {
    /// 64x64 outputs, a 4x4 block per thread (`gemm`).
    Square64,
    /// 128x128 outputs, an 8x8 block per thread (`gemm_wide`).
    Square128,
}

impl GemmTile {
    /// The tile for an `m` x `n` product: 128x128 where it has at least [`WIDE_MIN_TILES`] of them.
    pub fn for_product(m: usize, n: usize) -> Self {
        if m.div_ceil(128) * n.div_ceil(128) >= WIDE_MIN_TILES {
            Self::Square128
        } else {
            Self::Square64
        }
    }

    /// Outputs per tile edge.
    pub fn edge(self) -> usize {
        match self {
            Self::Square64 => 64,
            Self::Square128 => 128,
        }
    }

    /// The other tile.
    pub fn other(self) -> Self {
        match self {
            Self::Square64 => Self::Square128,
            Self::Square128 => Self::Square64,
        }
    }

    fn entry(self) -> &'static str {
        match self {
            Self::Square64 => "gemm",
            Self::Square128 => "gemm_wide",
        }
    }
}

impl std::fmt::Display for GemmTile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{0}x{0} tile", self.edge())
    }
}

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

/// Records `out = op(a) op(b) (+ bias)` with no autograd, on `tile` (else the tile for its shape).
fn launch(
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    (trans_a, trans_b): (bool, bool),
    tile: Option<GemmTile>,
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
    let tile = tile.unwrap_or(GemmTile::for_product(m, n));
    let kernel = Kernel::new(&SHADER, tile.entry())
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
        [
            n.div_ceil(tile.edge()) as u32,
            m.div_ceil(tile.edge()) as u32,
            1,
        ],
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
        // B(k, n) = b[n * k_len + k] when transposed: its columns read as rows of A are
        b: if trans_b {
            BLayout::ByColumns(Layout::rows(k))
        } else {
            BLayout::ByRows(Layout::rows(n))
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
            return out.requiring_grad_if(requires_grad);
        }
    }
    let out = Tensor::output_or(a.gpu(), &[m, n], requires_grad, into);
    launch(a, b, bias, &out, (trans_a, trans_b), None);
    out
}

/// `op(a) @ op(b)` on `gemm.wgsl` with the given tile, whatever the kernel set, with no autograd:
/// for benchmarks and tests that compare the tiles.
pub fn matmul_on_tile(
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
    tile: GemmTile,
) -> Tensor {
    let m = op_dims(a, trans_a, "a").0;
    let n = op_dims(b, trans_b, "b").1;
    let out = Tensor::output(a.gpu(), &[m, n], false);
    launch(a, b, None, &out, (trans_a, trans_b), Some(tile));
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
            smallvec![grad_a, grad_b]
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
    let mut inputs = ArrayVec::<&Tensor, 3>::from_iter([x, w]);
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
        autograd::record_into(&inputs, &out, move |g, offered| {
            let (w_slot, b_slot) = (
                offered[1].slot.as_ref(),
                offered.get(2).and_then(|o| o.slot.as_ref()),
            );
            let mut grads = smallvec![
                gx.then(|| matmul(g, &w_s, false, false)),
                gw.then(|| product(g, &x_s, (true, false), None, false, w_slot)),
            ];
            if has_bias {
                grads.push(gb.then(|| reduce::sum_per_channel_into(g, b_slot)));
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

#[cfg(test)]
mod tests {
    use super::GemmTile;

    #[test]
    fn large_products_take_the_wide_tile() {
        assert_eq!(GemmTile::for_product(2048, 2048), GemmTile::Square128);
        assert_eq!(GemmTile::for_product(4096, 1024), GemmTile::Square128);
        assert_eq!(GemmTile::for_product(2048, 1920), GemmTile::Square64);
        assert_eq!(GemmTile::for_product(1024, 1024), GemmTile::Square64);
        assert_eq!(GemmTile::for_product(1, 1), GemmTile::Square64);
        assert_eq!(GemmTile::Square128.to_string(), "128x128 tile");
    }
}
