//! A stride-1 convolution at the output positions of a window only, on the CPU set: lowered as
//! that set lowers conv2d ([`super::lowered`]), over the window's columns, for the cached sampler
//! (`ops::window`, which runs `window.wgsl` where this does not apply).

use super::columns::{lowering, pointwise, slabs};
use super::lowered::forward_product;
use super::shape::{dims4, kept_window, ConvShape};
use super::Conv2dOptions;
use crate::gpu::KernelSet;
use crate::ops::blocked::{self, BLayout, BiasPer, ColumnOrder, Layout, Lowering, Product};
use crate::ops::{elementwise, Epilogue};
use crate::tensor::Tensor;

/// The weight w (OIHW) laid out for [`conv2d_window`]: its kernel window's positions under
/// `options`, [Cout, Cin, window, 1] (a copy; later changes to w are not seen).
pub(crate) fn window_rows(w: &Tensor, options: &Conv2dOptions) -> Tensor {
    let [_, _, k_h, k_w] = dims4(w, "weight");
    let bits = options.mask.map_or(u64::MAX, |m| m.bits());
    let (win_h, win_w) = kept_window(k_h, k_w, bits);
    elementwise::kernel_window(w, win_h * win_w)
}

/// On the CPU set: the stride-1 conv2d of x [N, Cin, H, W] at output rows `[row, row + rows)` x
/// columns `[col, col + cols)` (`window`, in that order) only, with the weight laid out by
/// [`window_rows`] (OIHW dims `w4`), plus the bias: [N, Cout, rows, cols], or with `side` (a
/// window of one position) [1, Cout, 1, N], the N maps' values side by side. The columns of
/// those outputs only (`im2col` with the padding moved by the window's corner; x itself where a
/// pointwise convolution's window is its whole output) times the weight's rows, the sums split
/// into chunks of `chunk` terms as [`super::forward_sum_order`] says for an input of dims `full`
/// (x itself, or the map x is a window of). `None` (recording nothing) on the GPU set, where the
/// CPU set's launches would not fit, or where the product would not run the kernel variant that
/// the whole map's forward runs.
pub(crate) fn conv2d_window(
    (x, w_rows, bias): (&Tensor, &Tensor, Option<&Tensor>),
    (w4, options): ([usize; 4], &Conv2dOptions),
    (window, side): ([usize; 4], bool),
    (full, chunk): ([usize; 4], usize),
) -> Option<Tensor> {
    let gpu = x.gpu();
    if gpu.kernel_set() != KernelSet::Cpu {
        return None;
    }
    let s = ConvShape::of(dims4(x, "input"), w4, options);
    let whole_map = forward_product(&ConvShape::of(full, w4, options))?;
    let [row, col, rows, cols] = window;
    let whole = lowering(&s);
    let g = Lowering {
        out: [u32::try_from(rows).ok()?, u32::try_from(cols).ok()?],
        pad: [
            whole.pad[0].checked_sub(i32::try_from(row).ok()?)?,
            whole.pad[1].checked_sub(i32::try_from(col).ok()?)?,
        ],
        ..whole
    };
    let (k, n) = (g.rows(), g.columns());
    let (cout, plane) = (s.cout as usize, rows * cols);
    // (a position side by side is gathered from x's maps even where it is all of them)
    let whole_output = window == [0, 0, s.out_h as usize, s.out_w as usize];
    let in_place = pointwise(&s) && whole_output && !side;
    // one map (a position side by side) is a plain matrix [channels, n]: read and stored as
    // vec4 or element by element, as the whole map's product does
    let one_map = side || s.batch == 1;
    let matrix = |vec4: bool| one_map.then(|| Layout::row_major(n, vec4)).flatten();
    let (elements, b) = match (in_place, matrix(whole_map.b_vec4())) {
        (true, Some(b)) => (0, b),
        (true, None) => (0, Layout::channels(k, plane)),
        (false, _) => slabs(&g)?,
    };
    let c = match matrix(whole_map.c_vec4()) {
        Some(c) => c,
        None if side => return None,
        None => Layout::channels(cout, plane),
    };
    let product = Product {
        m: cout,
        n,
        k,
        a: Layout::rows(k),
        b: BLayout::ByRows(b),
        c,
    };
    let split = (
        u32::try_from(k.div_ceil(chunk.max(1))).ok()?,
        u32::try_from(chunk).ok()?,
    );
    let limit = gpu.limits().max_storage_buffer_binding_size as usize;
    // only windows whose product runs the variant of the kernel that the convolution's forward
    // runs, which is compiled already where the network was trained (the driver takes seconds
    // for each new variant)
    let fits = product.same_variant(&whole_map)
        && elements.checked_mul(4)? <= limit
        && elements < u32::MAX as usize
        && product.k_blocks_ready()
        && product.fits_split(gpu, split)
        && g.fits(gpu);
    if !fits {
        return None;
    }
    let columns = (!in_place).then(|| {
        let columns = Tensor::uninit(gpu, &[elements]);
        blocked::im2col(x, &g, ColumnOrder::AsB(b), &columns);
        columns
    });
    let shape = if side {
        [1, cout, 1, n]
    } else {
        [s.batch as usize, cout, rows, cols]
    };
    let flops = 2.0 * (cout * n * k) as f64;
    let bias = bias.map(|t| (t, BiasPer::Row));
    let b = columns.as_ref().unwrap_or(x);
    Some(blocked::product_split(
        &product,
        split,
        (w_rows, b),
        bias,
        &shape,
        flops,
        Epilogue::default(),
    ))
}
