//! Host side of `shaders/vq.wgsl`: nearest-code search (fused distance + argmin), the
//! straight-through estimator, and code-usage statistics. Code indices are f32 tensors holding
//! exact integers.

use smallvec::smallvec;

use crate::autograd;
use crate::gpu::{Binding, Kernel, KernelSet, Shader, CPU_LOOP_LIMIT};
use crate::ops::blocked;
use crate::ops::collective;
use crate::ops::gemm::GemmTile;
use crate::tensor::Tensor;

/// `shaders/vq.wgsl`.
pub static SHADER: Shader = crate::shader!("vq", Params, [Z, CODEBOOK, NORMS, OUT, OUT_DIST])
    .with_library(&collective::LIBRARY);
const Z: Binding = Binding::read(1, "z");
const CODEBOOK: Binding = Binding::read(2, "codebook");
const NORMS: Binding = Binding::read(3, "norms");
const OUT: Binding = Binding::read_write(4, "out");
const OUT_DIST: Binding = Binding::read_write(5, "out_dist");

/// Code dimensions per slice of the fused nearest-code kernel on a tile of `edge` rows and codes.
fn dims_per_slice(tile: GemmTile) -> usize {
    match tile {
        GemmTile::Square64 => 16,
        GemmTile::Square128 => 8,
    }
}
/// Most (code tile x dim slice) steps one invocation may take: keeps every loop nest well under the
/// 65535 iterations after which the software Vulkan driver (llvmpipe) silently stops a loop.
const MAX_TILE_STEPS: usize = 2048;
/// Aim for at least this many workgroups by splitting the codebook when the batch is small.
const TARGET_GROUPS: usize = 128;

crate::uniform_params! {
    struct Params {
        n: u32,
        k: u32,
        d: u32,
        hw: u32,
        k_chunk: u32,
        _pad: [u32; 3],
    }
}

/// Shapes of a quantization: rows N = batch x H x W, K codes of dimension D.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VqShape {
    pub batch: usize,
    pub d: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
}

impl VqShape {
    /// The shape of quantizing z [B, D, H, W] with codebook [K, D].
    pub fn of(z: &Tensor, codebook: &Tensor) -> Self {
        let (&[batch, d, h, w], &[k, dc]) = (z.shape(), codebook.shape()) else {
            panic!(
                "quantize: z must be [B, D, H, W] and the codebook [K, D], got {:?} and {:?}",
                z.shape(),
                codebook.shape()
            );
        };
        assert_eq!(
            d, dc,
            "quantize: z has {d} channels, codes have dimension {dc}"
        );
        Self { batch, d, h, w, k }
    }

    pub fn rows(&self) -> usize {
        self.batch * self.h * self.w
    }

    /// Floating-point operations of the distance products: 2 N K D.
    fn flops(&self) -> f64 {
        2.0 * (self.rows() * self.k * self.d) as f64
    }

    fn params(&self) -> Params {
        Params {
            n: self.rows() as u32,
            k: self.k as u32,
            d: self.d as u32,
            hw: (self.h * self.w) as u32,
            k_chunk: 0,
            _pad: [0; 3],
        }
    }

    /// The tile of the fused search: that of the GEMM of the same size (rows by codes).
    fn tile(&self) -> GemmTile {
        GemmTile::for_product(self.rows(), self.k)
    }

    /// (chunks, codes per chunk) of the fused search on `tile`: bounded work per invocation, and
    /// enough workgroups for small batches.
    fn code_chunks(&self, tile: GemmTile) -> (usize, usize) {
        let edge = tile.edge();
        let slices = self.d.div_ceil(dims_per_slice(tile));
        let max_codes = edge * (MAX_TILE_STEPS / slices).max(1);
        let tiles = self.k.div_ceil(edge);
        let for_occupancy = TARGET_GROUPS
            .div_ceil(self.rows().div_ceil(edge))
            .min(tiles);
        let wanted = self.k.div_ceil(max_codes).max(for_occupancy).max(1);
        let per_chunk = tiles.div_ceil(wanted) * edge;
        (self.k.div_ceil(per_chunk), per_chunk)
    }
}

/// Squared norms of the codebook rows, [K].
pub fn code_norms(codebook: &Tensor) -> Tensor {
    let &[k, d] = codebook.shape() else {
        panic!(
            "code_norms: the codebook must be [K, D], got {:?}",
            codebook.shape()
        );
    };
    let shape = VqShape {
        batch: 1,
        d,
        h: 1,
        w: 1,
        k,
    };
    let gpu = codebook.gpu();
    let norms = Tensor::uninit(gpu, &[k]);
    gpu.run(
        &SHADER,
        "code_norms",
        &shape.params(),
        &[codebook.bind(CODEBOOK), norms.bind(OUT)],
        gpu.grid_for(k),
    );
    norms
}

/// For z [B, D, H, W] and codebook [K, D]: the index of the nearest code (squared Euclidean
/// distance, ties to the lowest index) at every position, [B, H, W]. No gradient.
pub fn nearest_codes(z: &Tensor, codebook: &Tensor) -> Tensor {
    search(z, codebook, None)
}

/// [`nearest_codes`] by `vq.wgsl`'s fused search on the given tile, whatever the kernel set: for
/// benchmarks and tests that compare the tiles (both give the same codes).
pub fn nearest_codes_on_tile(z: &Tensor, codebook: &Tensor, tile: GemmTile) -> Tensor {
    search(z, codebook, Some(tile))
}

/// The nearest codes: on the CPU set's blocked search where it fits and no tile is asked for,
/// else on `vq.wgsl`'s fused search on `tile` (or the tile for the shape).
fn search(z: &Tensor, codebook: &Tensor, tile: Option<GemmTile>) -> Tensor {
    let shape = VqShape::of(z, codebook);
    let norms = code_norms(codebook);
    let gpu = z.gpu();
    let n = shape.rows();
    let blocked_chunk = blocked::nearest_chunk(shape.d);
    let by_blocks = tile.is_none()
        && gpu.kernel_set() == KernelSet::Cpu
        && blocked::nearest_fits(gpu, n, shape.h * shape.w, shape.k.div_ceil(blocked_chunk));
    let tile = tile.unwrap_or(shape.tile());
    let (chunks, per_chunk) = if by_blocks {
        (shape.k.div_ceil(blocked_chunk), blocked_chunk)
    } else {
        shape.code_chunks(tile)
    };
    let candidates = Tensor::uninit(gpu, &[chunks, n]);
    let distances = Tensor::uninit(gpu, &[chunks, n]);
    let mut params = shape.params();
    if by_blocks {
        blocked::nearest(z, codebook, &norms, per_chunk, &candidates, &distances);
    } else {
        params.k_chunk = per_chunk as u32;
        let mut groups = gpu.grid(n.div_ceil(tile.edge()) as u32);
        groups[2] = chunks as u32;
        let entry = match tile {
            GemmTile::Square64 => "nearest",
            GemmTile::Square128 => "nearest_wide",
        };
        gpu.dispatch_counted(
            &Kernel::new(&SHADER, entry),
            &params,
            &[
                z.bind(Z),
                codebook.bind(CODEBOOK),
                norms.bind(NORMS),
                candidates.bind(OUT),
                distances.bind(OUT_DIST),
            ],
            groups,
            shape.flops(),
        );
    }
    let codes = Tensor::uninit(gpu, &[shape.batch, shape.h, shape.w]);
    params.k_chunk = chunks as u32;
    gpu.run(
        &SHADER,
        "nearest_merge",
        &params,
        &[candidates.bind(Z), distances.bind(NORMS), codes.bind(OUT)],
        gpu.grid_for(n),
    );
    codes
}

/// The same search by the plain one-thread-per-row kernel (the benchmark's baseline). On the
/// software Vulkan driver it is exact only while K x (D + 2) < 65535 (llvmpipe's loop limit).
pub fn nearest_codes_naive(z: &Tensor, codebook: &Tensor) -> Tensor {
    let shape = VqShape::of(z, codebook);
    let norms = code_norms(codebook);
    let gpu = z.gpu();
    let codes = Tensor::uninit(gpu, &[shape.batch, shape.h, shape.w]);
    gpu.run(
        &SHADER,
        "nearest_naive",
        &shape.params(),
        &[
            z.bind(Z),
            codebook.bind(CODEBOOK),
            norms.bind(NORMS),
            codes.bind(OUT),
        ],
        gpu.grid_for(shape.rows()),
    );
    codes
}

/// The straight-through estimator: the values of `z_q`, with the gradient passed to `z` unchanged
/// (`z + sg(z_q - z)`); `z_q` itself gets no gradient from this op.
pub fn straight_through(z: &Tensor, z_q: &Tensor) -> Tensor {
    assert_eq!(
        z.shape(),
        z_q.shape(),
        "straight_through: shapes {:?} and {:?} differ",
        z.shape(),
        z_q.shape()
    );
    // tensors are immutable: the output shares z_q's storage, as a new node of the graph
    let out = z_q.with_requires_grad(autograd::needs_grad(&[z]));
    if out.requires_grad() {
        autograd::record(&[z], &out, |g| smallvec![Some(g.clone())]);
        return out;
    }
    out
}

/// From per-code counts [K] over `rows` vectors: [perplexity exp(-sum p log p), share of codes used].
/// The same bits on both kernel sets.
pub fn code_stats(counts: &Tensor, rows: usize) -> Tensor {
    let k = counts.numel();
    let shape = VqShape {
        batch: rows,
        d: 1,
        h: 1,
        w: 1,
        k,
    };
    let gpu = counts.gpu();
    let out = Tensor::uninit(gpu, &[2]);
    // the CPU set adds the same parts in one invocation, which loops K times (and 519 more for
    // the 256 parts and their tree, within the margin below the driver's cut)
    let entry = if gpu.kernel_set() == KernelSet::Cpu && k <= CPU_LOOP_LIMIT {
        "code_stats_serial"
    } else {
        "code_stats"
    };
    gpu.run(
        &SHADER,
        entry,
        &shape.params(),
        &[counts.bind(Z), out.bind(OUT)],
        [1, 1, 1],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::{dims_per_slice, GemmTile, VqShape};

    #[test]
    fn codebook_chunks_bound_the_work_and_cover_every_code() {
        for (rows, d, k) in [
            (4, 512, 16384),
            (65536, 64, 512),
            (1, 1, 1),
            (2048, 64, 512),
            (64, 8, 16384),
            (65536, 256, 8192),
        ] {
            let s = VqShape {
                batch: rows,
                d,
                h: 1,
                w: 1,
                k,
            };
            for tile in [GemmTile::Square64, GemmTile::Square128] {
                let edge = tile.edge();
                let (chunks, per_chunk) = s.code_chunks(tile);
                assert_eq!(per_chunk % edge, 0);
                assert!(
                    chunks * per_chunk >= k && (chunks - 1) * per_chunk < k,
                    "{rows} {d} {k} {tile}"
                );
                let steps = per_chunk / edge * d.div_ceil(dims_per_slice(tile));
                assert!(steps <= super::MAX_TILE_STEPS || per_chunk == edge);
            }
        }
    }

    #[test]
    fn large_searches_take_the_wide_tile() {
        let shape = |rows, k| VqShape {
            batch: rows,
            d: 64,
            h: 1,
            w: 1,
            k,
        };
        assert_eq!(shape(65536, 512).tile(), GemmTile::Square128);
        assert_eq!(shape(4096, 512).tile(), GemmTile::Square64);
    }
}
