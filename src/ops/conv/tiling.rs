//! How `conv.wgsl` tiles each product: the workgroup tile by the number of GEMM rows, and the split
//! of a product with few output tiles along K into chunks summed afterwards in a fixed order.

use super::shape::ConvShape;
use super::Mode;
use crate::gpu::OverrideAxis;

/// Workgroup tiles (rows per thread, columns per thread, K slice) of 16x16 threads of the
/// `conv2d` entry point: 64x64, 32x128 and 16x256 outputs.
const TILES: [(u32, u32, u32); 3] = [(4, 4, 16), (2, 8, 16), (1, 16, 8)];

/// The override constants of each of [`TILES`].
pub(super) const TILE_CONSTANTS: OverrideAxis = &[
    &[
        ("ROWS", TILES[0].0 as f64),
        ("COLS", TILES[0].1 as f64),
        ("TILE_K", TILES[0].2 as f64),
    ],
    &[
        ("ROWS", TILES[1].0 as f64),
        ("COLS", TILES[1].1 as f64),
        ("TILE_K", TILES[1].2 as f64),
    ],
    &[
        ("ROWS", TILES[2].0 as f64),
        ("COLS", TILES[2].1 as f64),
        ("TILE_K", TILES[2].2 as f64),
    ],
];

/// GEMM rows up to which the `conv2d_narrow` entry point computes a product.
const NARROW_ROWS: usize = 4;

/// How `conv.wgsl` tiles one product: its entry point, the GEMM rows and columns of a workgroup,
/// the K slice, and the override constants that select the tile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Tile {
    pub entry: &'static str,
    pub rows: u32,
    pub cols: u32,
    pub k_slice: u32,
    pub constants: &'static [(&'static str, f64)],
}

impl Tile {
    /// The tile for a GEMM of `m` rows: 64x64 normally, narrower when the GEMM has few rows so
    /// that a tile is not mostly empty, and for at most [`NARROW_ROWS`] rows every row of 1024
    /// columns (`conv2d_narrow`).
    pub fn for_rows(m: usize) -> Self {
        let blocked = |i: usize| {
            let (rows, cols, k_slice) = TILES[i];
            Self {
                entry: "conv2d",
                rows: 16 * rows,
                cols: 16 * cols,
                k_slice,
                constants: TILE_CONSTANTS[i],
            }
        };
        if m <= NARROW_ROWS {
            Self {
                entry: "conv2d_narrow",
                rows: NARROW_ROWS as u32,
                cols: 1024,
                k_slice: 16,
                constants: &[],
            }
        } else if m <= 16 {
            blocked(2)
        } else if m <= 32 {
            blocked(1)
        } else {
            blocked(0)
        }
    }
}

/// Aim for at least this many workgroups when splitting a product along K: a few per multiprocessor
/// of a large GPU (an H100 has 132), so that small layers at small batches still fill it.
const SPLIT_TARGET_GROUPS: usize = 256;
/// Each K chunk of a split forward product or input gradient covers at least this many products.
const MIN_K_CHUNK: usize = 128;
/// Each K chunk of a split weight gradient covers at least this many (its K, batch x pixels, is
/// long; a shorter chunk adds one more partial result to sum).
const MIN_WEIGHT_GRAD_K_CHUNK: usize = 64;
/// ... and at most this many: bounds the loop work of one invocation, which the software Vulkan
/// driver (llvmpipe) silently cuts after 65535 iterations.
const MAX_K_CHUNK: usize = 65536;

/// (M, the largest N, phases) of the GEMM a mode computes: an input gradient is one GEMM per stride
/// phase, the largest phase having ceil(in / stride) pixels per axis. Its sizes count the kernel
/// window's positions ([`ConvShape::window_taps`]).
pub(super) fn gemm_extent(s: &ConvShape, mode: Mode) -> (usize, usize, u32) {
    let u = |v: u32| v as usize;
    match mode {
        Mode::Forward => (u(s.cout), u(s.batch * s.out_h * s.out_w), 1),
        Mode::InputGrad => (
            u(s.cin),
            u(s.batch) * u(s.in_h).div_ceil(u(s.stride_h)) * u(s.in_w).div_ceil(u(s.stride_w)),
            s.stride_h * s.stride_w,
        ),
        Mode::WeightGrad => (u(s.cout), u(s.cin * s.window_taps()), 1),
    }
}

/// (chunks, K per chunk) of a product: a layer with few output tiles (few channels, a small batch)
/// has its K split so that enough workgroups are busy. The partial results are added afterwards
/// in a fixed order, so a shape is always computed the same way.
pub(super) fn k_split(s: &ConvShape, mode: Mode) -> (u32, u32) {
    let (m, n, phases) = gemm_extent(s, mode);
    let tile = Tile::for_rows(m);
    let tiles = m.div_ceil(tile.rows as usize) * n.div_ceil(tile.cols as usize) * phases as usize;
    let (k, min_chunk) = match mode {
        Mode::Forward => ((s.cin * s.window_taps()) as usize, MIN_K_CHUNK),
        Mode::InputGrad => (
            (s.cout * s.win_h.div_ceil(s.stride_h) * s.win_w.div_ceil(s.stride_w)) as usize,
            MIN_K_CHUNK,
        ),
        Mode::WeightGrad => (
            (s.batch * s.out_h * s.out_w) as usize,
            MIN_WEIGHT_GRAD_K_CHUNK,
        ),
    };
    split_k(k, tiles, min_chunk, tile.k_slice)
}

/// (chunks, K per chunk) for a product of `tiles` output tiles and length `k`: enough chunks for
/// [`SPLIT_TARGET_GROUPS`] workgroups, each at least `min_chunk` and at most [`MAX_K_CHUNK`] long,
/// a multiple of the K slice `tile_k`.
fn split_k(k: usize, tiles: usize, min_chunk: usize, tile_k: u32) -> (u32, u32) {
    let wanted = SPLIT_TARGET_GROUPS
        .div_ceil(tiles.max(1))
        .min(k / min_chunk)
        .max(k.div_ceil(MAX_K_CHUNK))
        .max(1);
    let chunk = k.div_ceil(wanted).div_ceil(tile_k as usize) * tile_k as usize;
    (k.div_ceil(chunk) as u32, chunk as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::Conv2dOptions;

    #[test]
    fn long_weight_gradients_are_split_into_chunks_covering_k() {
        // the split case of tests/conv.rs: batch 4, 3 -> 5 channels, 20x20, 3x3, padding 1
        let s = ConvShape::of([4, 3, 20, 20], [5, 3, 3, 3], &Conv2dOptions::new(1, 1));
        let (chunks, chunk) = k_split(&s, Mode::WeightGrad);
        assert_eq!((chunks, chunk), (25, 64));
        assert!(chunk % 8 == 0 && (chunks - 1) * chunk < 1600 && chunks * chunk >= 1600);
        // a short K is not split
        let small = ConvShape::of([1, 3, 8, 8], [5, 3, 3, 3], &Conv2dOptions::new(1, 1));
        assert_eq!(k_split(&small, Mode::WeightGrad).0, 1);
    }

    #[test]
    fn products_with_few_tiles_are_split_along_k() {
        let same = Conv2dOptions::new(1, 1);
        // the VQ-VAE's residual 3x3 conv 128 -> 32 at batch 32 on an 8x8 grid: 16 tiles
        let res = ConvShape::of([32, 128, 8, 8], [32, 128, 3, 3], &same);
        assert_eq!(k_split(&res, Mode::Forward), (9, 128));
        // its 128 -> 128 conv: the input gradient has 64 tiles and K = 1152
        let wide = ConvShape::of([32, 128, 8, 8], [128, 128, 3, 3], &same);
        assert_eq!(k_split(&wide, Mode::InputGrad), (4, 288));
        // K = 585 of tests/conv.rs: 4 chunks, the last one shorter
        let odd = ConvShape::of([2, 65, 4, 4], [3, 65, 3, 3], &same);
        assert_eq!(k_split(&odd, Mode::Forward), (4, 160));
        // the stride-2 cases of tests/conv.rs: 4 phases, each split in 2
        let strided = Conv2dOptions::new(2, 1);
        let phased = ConvShape::of([2, 20, 5, 6], [70, 20, 3, 3], &strided);
        assert_eq!(k_split(&phased, Mode::InputGrad), (2, 144));
        let tiny = ConvShape::of([1, 3, 4, 4], [64, 3, 3, 3], &strided);
        assert_eq!(k_split(&tiny, Mode::InputGrad), (2, 128));
        // many tiles: no split
        let big = ConvShape::of([128, 128, 16, 16], [128, 128, 3, 3], &same);
        assert_eq!(k_split(&big, Mode::Forward).0, 1);
        assert_eq!(k_split(&big, Mode::InputGrad).0, 1);
    }

    #[test]
    fn tiles_follow_the_number_of_rows() {
        let shape = |m| {
            let t = Tile::for_rows(m);
            (t.entry, t.rows, t.cols, t.k_slice)
        };
        assert_eq!(shape(3), ("conv2d_narrow", 4, 1024, 16));
        assert_eq!(shape(4), ("conv2d_narrow", 4, 1024, 16));
        assert_eq!(shape(5), ("conv2d", 16, 256, 8));
        assert_eq!(shape(32), ("conv2d", 32, 128, 16));
        assert_eq!(shape(33), ("conv2d", 64, 64, 16));
        assert_eq!(Tile::for_rows(33).constants, TILE_CONSTANTS[0]);
    }
}
