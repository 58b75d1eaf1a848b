//! How the operands of the CPU set's GEMM (`blocked.wgsl`) are laid out: strides with one level
//! of blocks, B read along n or along k, and a convolution's column matrix in slabs.

use super::{TALL_COLUMNS, WG};

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

/// How a product reads B.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BLayout {
    /// B(k, n) = b[(n / inner) * outer + n % inner + k * major]: along n within blocks.
    ByRows(Layout),
    /// B read as A is, its columns as A's rows: B(k, n) = b[n * major + (k / inner) * outer +
    /// (k % inner) * minor]: along k within blocks (a transposed operand).
    ByColumns(Layout),
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
