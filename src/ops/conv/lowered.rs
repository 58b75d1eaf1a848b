//! The convolutions of the CPU kernel set: each of the three products lowered onto the blocked
//! GEMM of `blocked.wgsl` through the columns of its input (`im2col`). A stride-1 input gradient
//! is the convolution of dy with the flipped weight; another input gradient folds the columns'
//! gradient back (`col2im`). A forward keeps its columns for the weight gradient; a product
//! reads them in slabs or as x shifted per kernel column (see [`super::columns`]). A pointwise
//! convolution's products read x, and write dx, in place. The columns hold the kernel window's
//! positions only (see [`ConvShape::window_taps`]): a mask that keeps a kernel's first rows
//! shortens every product's sums, with the weight's window copied where a product cannot read it
//! in place. A shape the
//! lowering cannot take (launches past the adapter's workgroup limit, column matrices past its
//! binding limit) runs on `conv.wgsl` as on a GPU; the choice depends on the shape only.

use super::columns::{
    flipped_input_gradient, flipped_lowering, lowered_columns, lowering, pointwise, ColumnMatrix,
};
use super::shape::ConvShape;
use super::{Conv2dOptions, Mode};
use crate::gpu::{Gpu, KernelSet};
use crate::ops::blocked::{
    self, BLayout, BiasPer, ColumnOrder, Layout, Lowering, Product, NO_WRAP, TALL_ROWS,
};
use crate::ops::window::transposed_weight;
use crate::ops::{elementwise, Epilogue};
use crate::tensor::Tensor;

/// The NCHW output gradient dy as the A of a weight gradient: A(co, (b, pixel)) = dy[b, co, pixel].
fn output_gradient(cout: usize, plane: usize) -> Layout {
    Layout {
        minor: 1,
        ..Layout::channels(cout, plane)
    }
}

/// A mode's product and the column matrix it needs.
struct Plan {
    product: Product,
    /// How the column matrix is made and read.
    matrix: ColumnMatrix,
    /// Elements of the column matrix (0 for [`ColumnMatrix::InPlace`]).
    cols: usize,
    /// The geometry of the columns: the convolution's own, or for a flipped input gradient the
    /// convolution of dy that computes it.
    lowering: Lowering,
    /// How the product reads the weight (forward and input gradient).
    weight: Weight,
}

/// How a product reads the weight.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Weight {
    /// In place (or not at all: the weight gradient).
    InPlace,
    /// The kernel window's positions copied out: [Cout, Cin x window] (see [`window_weight`]).
    Window,
    /// A transposed copy of the window's positions: [Cin x window, Cout rounded up to 4] (see
    /// [`transposed_weight`]).
    Transposed,
    /// A flipped copy of the window's positions: [Cin, Cout, window] (see
    /// [`blocked::flipped_weight`]).
    Flipped,
}

/// How a product that reads the weight's rows reads them: in place where the kernel window is the
/// whole kernel, otherwise from a copy of the window's positions.
fn window_or_in_place(s: &ConvShape) -> Weight {
    if s.window_shrunk() {
        Weight::Window
    } else {
        Weight::InPlace
    }
}

/// The positions of the weight `w` [Cout, Cin, kH, kW] in the kernel window of `s` (its first
/// positions), a copy: [Cout, Cin, window, 1].
fn window_weight(s: &ConvShape, w: &Tensor) -> Tensor {
    elementwise::kernel_window(w, s.window_taps() as usize)
}

/// The product of the forward convolution `s` on the CPU set (whether or not it fits the
/// adapter), or `None` when its column matrix's size overflows.
pub(super) fn forward_product(s: &ConvShape) -> Option<Product> {
    plan(s, Mode::Forward).map(|p| p.product)
}

fn plan(s: &ConvShape, mode: Mode) -> Option<Plan> {
    let g = lowering(s);
    let (k, n) = (g.rows(), g.columns());
    let (cout, plane) = (s.cout as usize, (s.out_h * s.out_w) as usize);
    let (n_pad, k_pad) = (n.div_ceil(4) * 4, k.div_ceil(4) * 4);
    let direct = pointwise(s);
    let plan = match mode {
        Mode::Forward => {
            // x itself for a pointwise convolution, else x shifted per kernel column where the
            // product can read it so, else its columns in slabs
            let (cols, b, matrix, lowering) = if direct {
                let b = BLayout::ByRows(Layout::channels(k, plane));
                (0, b, ColumnMatrix::InPlace, g)
            } else {
                lowered_columns(&g, cout, BLayout::TapsByRows, BLayout::ByRows)?
            };
            Plan {
                product: Product {
                    m: cout,
                    n,
                    k,
                    a: Layout::rows(k),
                    b,
                    c: Layout::channels(cout, plane),
                },
                matrix,
                cols,
                lowering,
                weight: window_or_in_place(s),
            }
        }
        Mode::InputGrad if !direct && flipped_input_gradient(s) => {
            let f = flipped_lowering(s);
            let cin = s.cin as usize;
            let (cols, b, matrix, lowering) =
                lowered_columns(&f, cin, BLayout::TapsByRows, BLayout::ByRows)?;
            Plan {
                product: Product {
                    m: cin,
                    n: f.columns(),
                    k: f.rows(),
                    a: Layout::rows(f.rows()),
                    b,
                    c: Layout::channels(cin, (s.in_h * s.in_w) as usize),
                },
                matrix,
                cols,
                lowering,
                weight: Weight::Flipped,
            }
        }
        Mode::InputGrad => {
            let mut product = Product {
                m: k,
                n,
                k: cout,
                // A(j, co) = w[co, j]: the transposed weight (of the window), read in place
                a: Layout {
                    major: 1,
                    minor: k as u32,
                    inner: NO_WRAP,
                    outer: 0,
                },
                b: BLayout::ByRows(Layout::channels(cout, plane)),
                // dx itself for a pointwise convolution, else the columns' gradient [k, n_pad]
                c: if direct {
                    Layout::channels(k, plane)
                } else {
                    Layout::rows(n_pad)
                },
            };
            // a product with many rows reads A as vec4 along k when it is a transposed copy
            let weight = if product.tall() {
                product.a = Layout::rows(cout.div_ceil(4) * 4);
                Weight::Transposed
            } else {
                window_or_in_place(s)
            };
            let (matrix, cols) = if direct {
                (ColumnMatrix::InPlace, 0)
            } else {
                (ColumnMatrix::Folded(n_pad), k.checked_mul(n_pad)?)
            };
            Plan {
                product,
                matrix,
                cols,
                lowering: g,
                weight,
            }
        }
        Mode::WeightGrad => {
            // a pointwise convolution's x read in place along k, B((b, pixel), ci) = x[b, ci,
            // pixel], where its planes hold whole groups of 4; for the tall product (32 output
            // channels or more) the columns as a forward keeps them (shifted rows or slabs),
            // read along k; else the transposed columns [n, k_pad], B(k = n, j) by rows
            let (b, matrix, cols, lowering) = if direct && plane.is_multiple_of(4) {
                let x = Layout::channels(k, plane);
                (BLayout::ByColumns(x), ColumnMatrix::InPlace, 0, g)
            } else if cout >= TALL_ROWS {
                let (cols, b, matrix, lowering) =
                    lowered_columns(&g, cout, BLayout::TapsByColumns, BLayout::ByColumns)?;
                (b, matrix, cols, lowering)
            } else {
                let order = ColumnOrder::Transposed(k_pad);
                let b = BLayout::ByRows(Layout::rows(k_pad));
                (b, ColumnMatrix::Lowered(order), n.checked_mul(k_pad)?, g)
            };
            Plan {
                product: Product {
                    m: cout,
                    n: k,
                    k: n,
                    a: output_gradient(cout, plane),
                    b,
                    c: Layout::rows(k),
                },
                matrix,
                cols,
                lowering,
                weight: Weight::InPlace,
            }
        }
    };
    Some(plan)
}

/// The plan when the device runs the CPU set and the shape suits the lowering.
fn usable_plan(gpu: &Gpu, s: &ConvShape, mode: Mode) -> Option<Plan> {
    if gpu.kernel_set() != KernelSet::Cpu {
        return None;
    }
    let plan = plan(s, mode)?;
    let limit = gpu.limits().max_storage_buffer_binding_size as usize;
    let bytes = plan.cols.checked_mul(4)?;
    let ok = bytes <= limit
        && plan.cols < u32::MAX as usize
        && plan.product.k_blocks_ready()
        && plan.product.fits(gpu)
        && plan.lowering.fits(gpu)
        // the sum of an input gradient folded by `col2im` is never split
        && (mode != Mode::InputGrad
            || plan.weight == Weight::Flipped
            || plan.product.split().0 == 1);
    ok.then_some(plan)
}

/// (chunks, K per chunk) of a product on the CPU set, or `None` when `conv.wgsl` computes it.
pub(super) fn k_split(gpu: &Gpu, s: &ConvShape, mode: Mode) -> Option<(u32, u32)> {
    usable_plan(gpu, s, mode).map(|p| p.product.split())
}

/// The column matrix of a forward convolution's input, kept for its weight gradient.
pub(super) struct Columns {
    /// Rows cin x window, columns batch x out_h x out_w, in slabs ([`Layout::slabs`]), or x
    /// shifted per kernel column ([`blocked::Taps`]), as its weight gradient's plan reads them.
    cols: Tensor,
}

/// Records `mode(lhs, rhs) (+ bias)` on the CPU set into a new tensor of `shape` or where
/// `epilogue` says (with its residual, ReLU and gate), or returns `None` (recording nothing) when `conv.wgsl` must
/// compute it. A forward convolution also returns the columns of its input, if it made them. No
/// autograd.
pub(super) fn launch(
    s: &ConvShape,
    mode: Mode,
    lhs: &Tensor,
    rhs: &Tensor,
    bias: Option<&Tensor>,
    shape: &[usize; 4],
    epilogue: Epilogue,
) -> Option<(Tensor, Option<Columns>)> {
    let gpu = lhs.gpu();
    let plan = usable_plan(gpu, s, mode)?;
    let g = &plan.lowering;
    let p = &plan.product;
    let flops = s.flops();
    let bias = bias.map(|t| (t, BiasPer::Row));
    let copy = match plan.weight {
        Weight::InPlace => None,
        Weight::Window => Some(window_weight(s, lhs)),
        Weight::Transposed if s.window_shrunk() => Some(transposed_weight(&window_weight(s, lhs))),
        Weight::Transposed => Some(transposed_weight(lhs)),
        Weight::Flipped => Some(blocked::flipped_weight(lhs, s.window_taps() as usize)),
    };
    let lhs = copy.as_ref().unwrap_or(lhs);
    let cols = match plan.matrix {
        // the columns' gradient w^T dy, folded back onto the input
        ColumnMatrix::Folded(ld) => {
            let cols =
                blocked::product(p, lhs, rhs, None, &[plan.cols], flops, Epilogue::default());
            epilogue.check_operands(shape);
            let out = Tensor::uninit_or(gpu, shape, epilogue.into);
            let bias = bias.map(|(t, _)| t);
            blocked::col2im(&cols, g, ld, bias, (&out, epilogue));
            return Some((out, None));
        }
        ColumnMatrix::Lowered(order) => {
            let cols = Tensor::uninit(gpu, &[plan.cols]);
            blocked::im2col(rhs, g, order, &cols);
            Some(cols)
        }
        ColumnMatrix::InPlace => None,
    };
    // forward: y = w cols(x); weight gradient: dw = dy cols(x)^T; a flipped input gradient: dx =
    // the flipped weight times cols(dy). A pointwise convolution reads x, or writes dx, in place.
    let b = cols.as_ref().unwrap_or(rhs);
    let out = match mode {
        Mode::WeightGrad => weight_grad_product(s, p, (lhs, b), epilogue.into),
        _ => blocked::product(p, lhs, b, bias, shape, flops, epilogue),
    };
    let columns = cols
        .filter(|_| mode == Mode::Forward)
        .map(|cols| Columns { cols });
    Some((out, columns))
}

/// Records the weight gradient product `p` of `s` (its C the rows of the kernel window's
/// positions per output channel) of dy and the columns `cols`, into a new tensor of the weight's
/// shape or `into`. Over a window smaller than the kernel it writes the window's positions only,
/// into zeros (the slot `into` that autograd offers holds zeros already; a new tensor is filled
/// with them).
fn weight_grad_product(
    s: &ConvShape,
    p: &Product,
    (dy, cols): (&Tensor, &Tensor),
    into: Option<&Tensor>,
) -> Tensor {
    let shape = s.w_shape();
    if !s.window_shrunk() {
        return blocked::product(p, dy, cols, None, &shape, s.flops(), Epilogue::into(into));
    }
    let out = super::zeroed_weight_grad(dy.gpu(), &shape, into);
    let runs = (s.window_taps() as usize, (s.k_h * s.k_w) as usize);
    blocked::product_into_runs(p, (dy, cols), s.flops(), runs, &out);
    out
}

/// The weight gradient dw = dy cols^T from the columns its forward convolution kept, written into
/// `into` where it is given: the weight gradient's own plan, which reads such columns in slabs
/// along k where its product is tall (32 output channels or more); `None` (recording nothing)
/// where it is not, or its launch would not fit the adapter.
fn weight_grad_from_columns(
    s: &ConvShape,
    dy: &Tensor,
    columns: &Columns,
    into: Option<&Tensor>,
) -> Option<Tensor> {
    let plan = usable_plan(dy.gpu(), s, Mode::WeightGrad)?;
    matches!(plan.matrix, ColumnMatrix::Lowered(ColumnOrder::AsB(_)))
        .then(|| weight_grad_product(s, &plan.product, (dy, &columns.cols), into))
}

/// The forward of conv2d (with `epilogue`'s residual and ReLU; marked as requiring gradients when
/// `rg`), and on the CPU set the columns of x it made, which the weight gradient can read instead
/// of making them again.
pub(super) fn forward_keeping_columns(
    s: &ConvShape,
    (w, x, bias): (&Tensor, &Tensor, Option<&Tensor>),
    epilogue: Epilogue,
    rg: bool,
) -> (Tensor, Option<Columns>) {
    match launch(s, Mode::Forward, w, x, bias, &s.y_shape(), epilogue) {
        Some((y, columns)) => (y.requiring_grad_if(rg), columns),
        None => {
            let y =
                super::products::split_launch(s, Mode::Forward, w, x, bias, &s.y_shape(), epilogue);
            (y.requiring_grad_if(rg), None)
        }
    }
}

/// The weight gradient of the conv2d `s` of x with output gradient dy, from the columns of x its
/// forward kept when there are some (and the product suits them), written into `into` where it
/// is given.
pub(super) fn weight_grad(
    s: &ConvShape,
    dy: &Tensor,
    x: &Tensor,
    columns: Option<Columns>,
    options: Conv2dOptions,
    into: Option<&Tensor>,
) -> Tensor {
    columns
        .and_then(|c| weight_grad_from_columns(s, dy, &c, into))
        .unwrap_or_else(|| {
            let k_hw = (s.k_h as usize, s.k_w as usize);
            super::weight_grad_into(dy, x, k_hw, options, into)
        })
}
