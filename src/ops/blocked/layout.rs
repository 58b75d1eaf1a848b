//! How the operands of the CPU set's GEMM (`blocked.wgsl`) are laid out: strides with one level
//! of blocks, B read along n or along k, a convolution's column matrix in slabs, and its input
//! shifted per kernel column ([`Taps`], two levels of blocks).

use super::{Params, TALL_COLUMNS, WG};

/// An index that never wraps: `inner` of a plain row-major operand.
pub(crate) const NO_WRAP: u32 = u32::MAX;

/// Columns of a convolution's column matrix per slab (see [`Layout::slabs`]): the columns of C
/// one `gemm_tall` workgroup computes.
const SLAB: usize = TALL_COLUMNS * WG;

/// How an operand of a product ([`super::product`]) is laid out; see `blocked.wgsl` for the index
/// formulas and [`BLayout`] for B's two readings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// A: stride of m; B by rows: stride of k; B by columns: stride of n; C: stride of m.
    pub major: u32,
    /// A and B by columns: stride of k within a block of `inner` (B by rows and C: 1).
    pub minor: u32,
    /// Length of the contiguous block along k (A, B by columns) or n (B by rows, C); [`NO_WRAP`]
    /// for a plain matrix.
    pub inner: u32,
    /// Offset between consecutive blocks.
    pub outer: u32,
}

impl Layout {
    /// A row-major matrix with rows `row` apart.
    pub fn rows(row: usize) -> Self {
        Self {
            major: row as u32,
            minor: 1,
            inner: NO_WRAP,
            outer: 0,
        }
    }

    /// A row-major matrix with rows `row` apart that the kernels read (as B by rows) or store (as
    /// C) four elements at a time where `vec4` says (`None` where its rows do not hold whole
    /// vec4), else element by element (blocks of one element), so that a product runs the kernel
    /// variant another one does.
    pub fn row_major(row: usize, vec4: bool) -> Option<Self> {
        if vec4 {
            return row.is_multiple_of(4).then(|| Self::rows(row));
        }
        Some(Self {
            major: row as u32,
            minor: 1,
            inner: 1,
            outer: 1,
        })
    }

    /// An NCHW tensor seen as [channels, batch x plane]: channel stride `plane`, images
    /// `channels x plane` apart.
    pub fn channels(channels: usize, plane: usize) -> Self {
        Self {
            major: plane as u32,
            minor: 1,
            inner: plane as u32,
            outer: (channels * plane) as u32,
        }
    }

    /// A matrix of `rows` rows in slabs of [`SLAB`] columns: element (j, n) at
    /// `(n / SLAB) * rows * SLAB + n % SLAB + j * SLAB` ([`slab_elements`] in all). As
    /// [`BLayout::ByRows`], B(j, n); as [`BLayout::ByColumns`], B(n, j): either way a `gemm_tall`
    /// workgroup reads its operand from one slab's contiguous block.
    pub fn slabs(rows: usize) -> Self {
        Self {
            major: SLAB as u32,
            minor: 1,
            inner: SLAB as u32,
            outer: (rows * SLAB) as u32,
        }
    }

    pub(super) fn vec4_ready(&self) -> bool {
        self.major.is_multiple_of(4)
            && (self.inner == NO_WRAP
                || (self.inner.is_multiple_of(4) && self.outer.is_multiple_of(4)))
    }
}

/// Elements of a matrix of `rows` x `columns` in [`Layout::slabs`] (the last slab whole), or
/// `None` on overflow.
pub(crate) fn slab_elements(rows: usize, columns: usize) -> Option<usize> {
    rows.checked_mul(columns.div_ceil(SLAB))?.checked_mul(SLAB)
}

/// A stride-1 convolution's input shifted once per kernel column, the column matrix a product
/// reads in its place: for each image, channel ci and kernel column kx, the `out_h + kH - 1` rows
/// of `out_w` elements that the kernel's rows read (`x[ci, y - pad_h, x + kx - pad_w]`, zeros
/// in the padding). Its element (j, n), j = (ci, ky, kx) over the kernel (window) and n = (b,
/// pixel), lies at `b * image + pixel + ci * channel + ky * row + kx * column`: the kernel rows
/// of a column share one copy, so it holds `(out_h + kH - 1) / (out_h kH)` of the column matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Taps {
    /// Kernel (window) rows and columns.
    pub k_h: u32,
    pub k_w: u32,
    /// Pixels of one output plane (`out_h x out_w`).
    pub plane: u32,
    /// Strides of a kernel row (one output row, `out_w`), a kernel column (one shifted copy),
    /// a channel and an image.
    pub row: u32,
    pub column: u32,
    pub channel: u32,
    pub image: u32,
}

impl Taps {
    /// Whether a product can read it four columns (or four k along n) at a time: every stride
    /// a multiple of 4 (the plane's and a row's; the others are multiples of a row).
    pub(super) fn vec4_ready(&self) -> bool {
        [self.plane, self.row].iter().all(|v| v.is_multiple_of(4))
    }

    /// How `im2col` writes it: as the columns of a convolution with a 1 x kW kernel over
    /// `out_h + kH - 1` output rows (see [`super::Lowering`]), element (j', n') at
    /// `(n' / column) * image + n' % column + j' * column`.
    pub fn written(&self) -> Layout {
        Layout {
            major: self.column,
            minor: 1,
            inner: self.column,
            outer: self.image,
        }
    }
}

/// How a product reads B.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BLayout {
    /// B(k, n) = b[(n / inner) * outer + n % inner + k * major]: along n within blocks.
    ByRows(Layout),
    /// B read as A is, its columns as A's rows: B(k, n) = b[n * major + (k / inner) * outer +
    /// (k % inner) * minor]: along k within blocks (a transposed operand).
    ByColumns(Layout),
    /// B(k = j, n): a convolution's column matrix read from its [`Taps`] (`gemm_tall` only).
    TapsByRows(Taps),
    /// B(k = n, j): the same, transposed, as a weight gradient reads it (`gemm_tall` only).
    TapsByColumns(Taps),
}

/// Whether an operand's blocks along k (A, B by columns) hold whole groups of 4, or it has none.
pub(super) fn whole_k_blocks(l: &Layout) -> bool {
    l.inner == NO_WRAP || l.inner.is_multiple_of(4)
}

impl BLayout {
    /// Whether B's blocks along k, if it has some the kernels take four k at a time, hold whole
    /// groups of 4 (kernel taps are taken one k at a time).
    pub(super) fn k_blocks_ready(&self) -> bool {
        match self {
            BLayout::ByRows(_) | BLayout::TapsByRows(_) => true,
            BLayout::ByColumns(b) => whole_k_blocks(b),
            BLayout::TapsByColumns(t) => t.vec4_ready(),
        }
    }

    /// Whether `gemm_tall` can read B four k at a time per column as one vec4: contiguous along
    /// k, columns and blocks on whole vec4.
    pub(super) fn kmajor(&self) -> bool {
        match self {
            BLayout::ByColumns(b) => b.minor == 1 && b.vec4_ready(),
            BLayout::TapsByColumns(t) => t.vec4_ready(),
            _ => false,
        }
    }

    /// Whether the kernels can read B as two vec4 per k: B by rows, rows and blocks on whole vec4.
    pub(super) fn vec4(&self) -> bool {
        match self {
            BLayout::ByRows(b) => b.vec4_ready(),
            BLayout::TapsByRows(t) => t.vec4_ready(),
            _ => false,
        }
    }

    /// Whether B is read from kernel taps.
    pub(super) fn taps(&self) -> bool {
        matches!(self, BLayout::TapsByRows(_) | BLayout::TapsByColumns(_))
    }

    /// B's layout as the kernels' parameters (`b_*`; the rest default).
    pub(super) fn params(&self) -> Params {
        match *self {
            BLayout::ByRows(b) => Params {
                b_k: b.major,
                b_inner: b.inner,
                b_outer: b.outer,
                b_k_inner: NO_WRAP,
                ..Params::default()
            },
            // column n's base is n * major: blocks of one column, `major` apart
            BLayout::ByColumns(b) => Params {
                b_k: b.minor,
                b_inner: 1,
                b_outer: b.major,
                b_k_inner: b.inner,
                b_k_outer: b.outer,
                ..Params::default()
            },
            // k = (ci, ky, kx): kx within blocks, ky within groups of kH blocks, channels apart
            BLayout::TapsByRows(t) => Params {
                b_k: t.column,
                b_k_inner: t.k_w,
                b_k_outer: t.row,
                b_k_mid: t.k_h,
                b_k_far: t.channel,
                b_inner: t.plane,
                b_outer: t.image,
                ..Params::default()
            },
            // k = (b, pixel) in blocks of planes, images apart; columns j = (ci, ky, kx) as above
            BLayout::TapsByColumns(t) => Params {
                b_k: 1,
                b_k_inner: t.plane,
                b_k_outer: t.image,
                b_inner: t.k_w,
                b_n: t.column,
                b_mid: t.k_h,
                b_outer: t.row,
                b_far: t.channel,
                ..Params::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec4_needs_whole_groups_of_four() {
        assert!(Layout::rows(8).vec4_ready());
        assert!(!Layout::rows(6).vec4_ready());
        assert!(Layout::channels(3, 16).vec4_ready());
        assert!(!Layout::channels(3, 9).vec4_ready());
        assert!(Layout::row_major(8, true).unwrap().vec4_ready());
        assert!(Layout::row_major(6, true).is_none());
        assert!(!Layout::row_major(8, false).unwrap().vec4_ready());
    }
}
