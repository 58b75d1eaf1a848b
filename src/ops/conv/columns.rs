//! The column matrices of the CPU set's lowered convolutions ([`super::lowered`]): the geometry
//! of a convolution's columns ([`Lowering`]), and how they are written and read. A product reads
//! either the column matrix in slabs of 64 columns ([`Layout::slabs`]) or, at stride 1, x
//! shifted once per kernel column ([`Taps`]), which the kernel rows share.

use super::shape::ConvShape;
use crate::ops::blocked::{slab_elements, BLayout, ColumnOrder, Layout, Lowering, Taps};

/// The lowering of `s` over its kernel window: the window is the kernel of the columns (it starts
/// at the kernel's first position, so the padding stays), with the mask's bits where it drops a
/// window position.
pub(super) fn lowering(s: &ConvShape) -> Lowering {
    Lowering {
        x: [s.batch, s.cin, s.in_h, s.in_w],
        out: [s.out_h, s.out_w],
        kernel: [s.win_h, s.win_w],
        stride: [s.stride_h, s.stride_w],
        pad: [s.pad_h as i32, s.pad_w as i32],
        mask: if s.masked() { s.mask() } else { u64::MAX },
    }
}

/// Whether the convolution is pointwise (1x1 kernel kept, stride 1, no padding): its column
/// matrix is x itself, read in place.
pub(super) fn pointwise(s: &ConvShape) -> bool {
    s.k_h == 1
        && s.k_w == 1
        && s.stride_h == 1
        && s.stride_w == 1
        && s.pad_h == 0
        && s.pad_w == 0
        && s.mask_lo & 1 == 1
}

/// The column matrix of a plan.
#[derive(Clone, Copy)]
pub(super) enum ColumnMatrix {
    /// None: a pointwise convolution's product reads x, or writes dx, in place.
    InPlace,
    /// Written by `im2col` as the order says, read by the product as B.
    Lowered(ColumnOrder),
    /// The columns' gradient [rows, ld], written by the product as C and folded back by `col2im`.
    Folded(usize),
}

/// Whether the input gradient is computed as a convolution of dy (stride 1, padding below the
/// kernel size): dx = conv(dy, the weight flipped and its channels exchanged, padding k - 1 - p).
/// Its columns have Cout x window rows where `col2im` would read Cin x window of them.
pub(super) fn flipped_input_gradient(s: &ConvShape) -> bool {
    s.stride_h == 1 && s.stride_w == 1 && s.pad_h < s.k_h && s.pad_w < s.k_w
}

/// The convolution of dy [batch, cout, out_h, out_w] that computes dx (see
/// [`flipped_input_gradient`]), over the flipped kernel window: the window's positions in reverse,
/// which end where the flipped kernel ends (padding window - 1 - p, negative where the window is
/// shorter than the padding); a kept window position t is kept at window - 1 - t.
pub(super) fn flipped_lowering(s: &ConvShape) -> Lowering {
    let g = lowering(s);
    let taps = u64::from(s.window_taps());
    let mask = if g.mask == u64::MAX {
        u64::MAX
    } else {
        (0..taps)
            .filter(|&t| g.mask >> t & 1 == 1)
            .fold(0u64, |m, t| m | 1 << (taps - 1 - t))
    };
    Lowering {
        x: [s.batch, s.cout, s.out_h, s.out_w],
        out: [s.in_h, s.in_w],
        pad: [
            s.win_h as i32 - 1 - s.pad_h as i32,
            s.win_w as i32 - 1 - s.pad_w as i32,
        ],
        mask,
        ..g
    }
}

/// The column matrix of `g` in slabs ([`Layout::slabs`]), written by `im2col` and read by a
/// product as B by rows: its elements and the layout.
pub(super) fn slabs(g: &Lowering) -> Option<(usize, Layout)> {
    let rows = g.rows();
    Some((slab_elements(rows, g.columns())?, Layout::slabs(rows)))
}

/// The columns of `g` that `im2col` writes for a product of `m` rows, read as B: x shifted per
/// kernel column where the product can read it so ([`Lowering::shifted_rows`], B as `taps`
/// says), else the column matrix in slabs (B as `slab` says). Their elements, B, how they are
/// written and the lowering that writes them.
pub(super) fn lowered_columns(
    g: &Lowering,
    m: usize,
    taps: fn(Taps) -> BLayout,
    slab: fn(Layout) -> BLayout,
) -> Option<(usize, BLayout, ColumnMatrix, Lowering)> {
    if let Some((t, written, cols)) = g.shifted_rows(m) {
        let order = ColumnOrder::AsB(t.written());
        return Some((cols, taps(t), ColumnMatrix::Lowered(order), written));
    }
    let (cols, b) = slabs(g)?;
    Some((
        cols,
        slab(b),
        ColumnMatrix::Lowered(ColumnOrder::AsB(b)),
        *g,
    ))
}
