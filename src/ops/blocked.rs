//! Host side of `shaders/blocked.wgsl`: the kernels of the CPU kernel set (see
//! [`crate::gpu::KernelSet`]). A strided, register-blocked GEMM whose operands may be NCHW
//! tensors; in its submodules, the operands' layouts, the nearest-code search on the same block,
//! the `im2col` / `col2im` pair that lowers a convolution onto the GEMM, and the texture copies
//! of the operands that all of them read.

use crate::gpu::{Binding, Gpu, Kernel, Shader, CPU_SET_LANES};
use crate::ops::{reduce, Epilogue};
use crate::tensor::{Shape, Tensor};

mod copies;
mod layout;
mod lowering;
mod nearest;
use copies::dispatch_with_copies;
pub(crate) use layout::{slab_elements, BLayout, Layout, Taps, NO_WRAP};
pub(crate) use lowering::{col2im, flipped_weight, im2col, ColumnOrder, Lowering};
pub(crate) use nearest::{nearest, nearest_chunk, nearest_fits};

/// `shaders/blocked.wgsl`: the GEMM in both workgroup widths and bias kinds, and the lowering
/// kernels.
pub static SHADER: Shader = crate::shader!(
    "blocked",
    Params,
    [A, B, BIAS, C, C_DIST, A_VEC4, COLS, C_VEC4, RESIDUAL, GATE, A_TEX, B_TEX],
    subgroups,
    overrides: [
        &[&[("WG", WG as f64)]],
        &[&[("BIAS", 0.0)], &[("BIAS", 1.0)], &[("BIAS", 2.0)]],
        &[&[("GROUPS", 4.0)], &[("GROUPS", 8.0)]],
    ]
)
.reading_copies(crate::ops::texel::SOURCE);

/// The fewest rows (M) of a product that `gemm_tall` computes.
pub(crate) const TALL_ROWS: usize = 32;
const A: Binding = Binding::read(1, "a");
const B: Binding = Binding::read(2, "b");
const BIAS: Binding = Binding::read(3, "bias");
const C: Binding = Binding::read_write(4, "c");
const C_DIST: Binding = Binding::read_write(5, "c_dist");
const A_VEC4: Binding = Binding::read(6, "a_vec4");
const COLS: Binding = Binding::read_write(7, "cols4");
const C_VEC4: Binding = Binding::read_write(8, "c_vec4");
const RESIDUAL: Binding = Binding::read(9, "residual");
const GATE: Binding = Binding::read(10, "gate");
const A_TEX: Binding = Binding::texture(11, "a_tex");
const B_TEX: Binding = Binding::texture(12, "b_tex");

crate::uniform_params! {
    #[derive(Default, Debug)]
    pub(crate) struct Params {
        pub m: u32,
        pub n: u32,
        pub k: u32,
        pub k_chunk: u32,
        pub a_m: u32,
        pub a_k: u32,
        pub a_inner: u32,
        pub a_outer: u32,
        pub b_k: u32,
        pub b_inner: u32,
        pub b_outer: u32,
        pub b_k_inner: u32,
        pub b_k_outer: u32,
        pub c_m: u32,
        pub c_inner: u32,
        pub c_outer: u32,
        pub c_chunk: u32,
        pub ld: u32,
        pub batch: u32,
        pub cin: u32,
        pub in_h: u32,
        pub in_w: u32,
        pub out_h: u32,
        pub out_w: u32,
        pub k_h: u32,
        pub k_w: u32,
        pub stride_h: u32,
        pub stride_w: u32,
        pub pad_h: u32,
        pub pad_w: u32,
        pub mask_lo: u32,
        pub mask_hi: u32,
        pub relu: u32,
        pub gate: u32,
        pub b_k_mid: u32,
        pub b_k_far: u32,
        pub b_n: u32,
        pub b_mid: u32,
        pub b_far: u32,
    }
}

/// Rows and columns of C one GEMM invocation computes.
const BLOCK: usize = CPU_SET_LANES as usize;
/// Invocations per GEMM workgroup: 64 columns of C per workgroup keep a workgroup's columns of B
/// in the CPU's cache while the workgroups along m reuse them.
const WG: usize = 8;
/// Columns of C one `gemm_tall` invocation computes.
const TALL_COLUMNS: usize = 8;
/// Each K chunk of one invocation loops at most this many times over 4 k: the software driver
/// silently cuts a loop nest after 65535 iterations.
pub(crate) const MAX_K_CHUNK: usize = 4 * 15_000;

/// Where the bias of a [`gemm`] goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BiasPer {
    /// One value per row m.
    Row = 1,
    /// One value per column n.
    Column = 2,
}

/// A product C[m, n] = sum over k of A(m, k) B(k, n) with its operands' layouts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Product {
    /// Rows of C.
    pub m: usize,
    /// Columns of C.
    pub n: usize,
    /// Length of the sums.
    pub k: usize,
    /// A(m, k).
    pub a: Layout,
    /// B(k, n).
    pub b: BLayout,
    /// C(m, n).
    pub c: Layout,
}

impl Product {
    /// Whether A's blocks along k, and B's if it has some, hold whole groups of 4 (the kernel
    /// loads 4 k at a time).
    pub fn k_blocks_ready(&self) -> bool {
        layout::whole_k_blocks(&self.a) && self.b.k_blocks_ready()
    }

    /// Groups of 8 rows one invocation of `gemm_tall` computes for this product, or `None` when
    /// M is too small for it and `gemm` (8 x 8 blocks) runs.
    fn tall_groups(&self) -> Option<usize> {
        if !self.tall() {
            return None;
        }
        match self.m {
            m if m >= 64 => Some(8),
            _ => Some(4),
        }
    }

    /// Whether `gemm_tall` (not `gemm`) computes this product: M of at least [`TALL_ROWS`].
    pub fn tall(&self) -> bool {
        self.m >= TALL_ROWS
    }

    /// Whether `gemm_tall` can read A four k at a time as one vec4: contiguous along k, rows and
    /// blocks on whole vec4.
    fn a_vec4(&self) -> bool {
        self.a.minor == 1 && self.a.vec4_ready()
    }

    /// Whether `gemm_tall` can read B four k at a time per column as one vec4: contiguous along k,
    /// columns and blocks on whole vec4.
    fn b_kmajor(&self) -> bool {
        self.b.kmajor()
    }

    /// Whether the kernels can read B as two vec4 per k: B by rows, rows and blocks on whole vec4.
    pub(crate) fn b_vec4(&self) -> bool {
        self.b.vec4()
    }

    /// Whether `gemm_tall` can write C as vec4: N, C's rows and blocks on whole vec4.
    pub(crate) fn c_vec4(&self) -> bool {
        self.n.is_multiple_of(4) && self.c.vec4_ready()
    }

    /// Whether a launch of this product runs the kernel variant `other`'s does (the same entry
    /// point and operand readings; the bias, residual, gate and split are the caller's): a
    /// software driver takes seconds to compile each new variant.
    pub(crate) fn same_variant(&self, other: &Product) -> bool {
        // `gemm` reads B as vec4 or not; `gemm_tall` also A, B along k and C
        let variant = |p: &Product| {
            let tall = p.tall_groups().is_some();
            let reads = [p.a_vec4(), p.b_kmajor(), p.c_vec4()].map(|r| tall && r);
            (p.tall_groups(), p.b_vec4(), reads)
        };
        variant(self) == variant(other)
    }

    /// Workgroups (x along m, y along n) of the launch.
    fn groups(&self) -> [usize; 2] {
        match self.tall_groups() {
            Some(groups) => [
                self.m.div_ceil(BLOCK * groups),
                self.n.div_ceil(TALL_COLUMNS * WG),
            ],
            None => [self.m.div_ceil(BLOCK), self.n.div_ceil(BLOCK * WG)],
        }
    }

    /// (chunks, K per chunk): K is split when one invocation would loop too long, or when the
    /// product has too few blocks to keep a few CPU threads busy. Depends on the shape only.
    pub fn split(&self) -> (u32, u32) {
        let [x, y] = self.groups();
        let blocks = x * y;
        let busy = if blocks < 16 && self.k >= 4096 {
            16usize.div_ceil(blocks).min(self.k / 2048)
        } else {
            1
        };
        let chunks = busy.max(self.k.div_ceil(MAX_K_CHUNK)).max(1);
        let chunk = self.k.div_ceil(chunks).div_ceil(4) * 4;
        (self.k.div_ceil(chunk) as u32, chunk as u32)
    }

    /// Whether the launch fits the adapter's workgroup-count limit.
    pub fn fits(&self, gpu: &Gpu) -> bool {
        self.fits_split(gpu, self.split())
    }

    /// Whether the launch with its sum split as `split` = (chunks, K per chunk) says fits the
    /// adapter's workgroup-count limit and the split is one the kernels take ([`Product::takes`]).
    pub fn fits_split(&self, gpu: &Gpu, split: (u32, u32)) -> bool {
        let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
        let [x, y] = self.groups();
        x <= max && y <= max && (split.0 as usize) <= max && self.takes(split)
    }

    /// Whether `(chunks, chunk)` splits K in a way the kernels take: the chunks cover K, each
    /// loops within the driver's limit, and several chunks hold whole groups of 4.
    fn takes(&self, (chunks, chunk): (u32, u32)) -> bool {
        chunks as usize * chunk as usize >= self.k
            && (chunk as usize).min(self.k) <= MAX_K_CHUNK
            && (chunks == 1 || chunk.is_multiple_of(4))
    }
}

/// C = A B (+ bias) as a new tensor of `shape`, or where `epilogue` says (its elements laid out as
/// `p.c` says), with the epilogue's ReLU. A product split along K (see [`Product::split`]) writes
/// one partial result per chunk, then adds them in order (the bias goes into the first; the ReLU
/// into the sum). `b` is bound rounded up to whole vec4. No autograd.
pub(crate) fn product(
    p: &Product,
    a: &Tensor,
    b: &Tensor,
    bias: Option<(&Tensor, BiasPer)>,
    shape: &[usize],
    flops: f64,
    epilogue: Epilogue,
) -> Tensor {
    product_split(p, p.split(), (a, b), bias, shape, flops, epilogue)
}

/// [`product`] with its sum split along K as `split` = (chunks, K per chunk) says instead of as
/// its shape would (a split [`Product::takes`]): a product over some of another's columns then
/// sums as that one does.
pub(crate) fn product_split(
    p: &Product,
    split: (u32, u32),
    (a, b): (&Tensor, &Tensor),
    bias: Option<(&Tensor, BiasPer)>,
    shape: &[usize],
    flops: f64,
    epilogue: Epilogue,
) -> Tensor {
    let gpu = a.gpu();
    assert!(
        p.takes(split),
        "blocked product: a split of {split:?} for K = {}",
        p.k
    );
    epilogue.check_operands(shape);
    if split.0 == 1 {
        let out = Tensor::uninit_or(gpu, shape, epilogue.into);
        launch(p, a, b, bias, (&out, epilogue), split, flops);
        return out;
    }
    let mut partial_shape = Shape::from_elem(split.0 as usize, 1);
    partial_shape.extend_from_slice(shape);
    let partial = Tensor::uninit(gpu, &partial_shape);
    launch(p, a, b, bias, (&partial, Epilogue::default()), split, flops);
    reduce::sum_axis_with(&partial, 0, epilogue)
}

/// C = A B (no bias, no epilogue) into `out` with C's rows (of `p.n` elements, `p.n` a multiple of
/// `run`) placed in runs of `run` elements, `stride` apart, leaving the elements between the runs
/// as they are. `p.c` is ignored. A product split along K writes its partial results packed, then
/// adds them in order into the runs.
pub(crate) fn product_into_runs(
    p: &Product,
    (a, b): (&Tensor, &Tensor),
    flops: f64,
    (run, stride): (usize, usize),
    out: &Tensor,
) {
    assert!(
        run > 0 && p.n.is_multiple_of(run) && run <= stride,
        "product_into_runs: rows of {} in runs of {run}, {stride} apart",
        p.n
    );
    let split = p.split();
    let whole = Epilogue::default();
    if split.0 == 1 {
        let runs = Layout {
            major: (p.n / run * stride) as u32,
            minor: 1,
            inner: run as u32,
            outer: stride as u32,
        };
        let p = Product { c: runs, ..*p };
        launch(&p, a, b, None, (out, whole), split, flops);
        return;
    }
    let p = Product {
        c: Layout::rows(p.n),
        ..*p
    };
    let partial = Tensor::uninit(a.gpu(), &[split.0 as usize, p.m * p.n]);
    launch(&p, a, b, None, (&partial, whole), split, flops);
    reduce::sum_chunks_into_runs(&partial, (run, stride), out);
}

/// Records one launch of the GEMM into `out.0` (with the residual, ReLU and gate of `out.1`; its `into`
/// is not looked at), K in `split` = (chunks, K per chunk), chunk i written `out.numel() / chunks`
/// elements after chunk i - 1.
fn launch(
    p: &Product,
    a: &Tensor,
    b: &Tensor,
    bias: Option<(&Tensor, BiasPer)>,
    (out, epilogue): (&Tensor, Epilogue),
    split: (u32, u32),
    flops: f64,
) {
    assert!(
        p.k_blocks_ready(),
        "blocked gemm: A's and B's blocks along k must hold groups of 4"
    );
    assert!(
        p.tall() || !p.b.taps(),
        "blocked gemm: B read from kernel taps needs gemm_tall"
    );
    let kernel = match p.tall_groups() {
        Some(groups) => Kernel::new(&SHADER, "gemm_tall")
            .flag("A_VEC4", p.a_vec4())
            .flag("B_KMAJOR", p.b_kmajor())
            .flag("C_VEC4", p.c_vec4())
            .with("GROUPS", groups as f64),
        None => Kernel::new(&SHADER, "gemm"),
    };
    // the gate's reads where a gate is given, and in the variants of the products an input
    // gradient runs (C as vec4, B by rows, no bias or residual), with or without one: those share
    // a variant; the others compile much faster without the reads
    let gated = epilogue.gate.is_some()
        || (p.tall()
            && p.c_vec4()
            && !p.b_kmajor()
            && bias.is_none()
            && epilogue.residual.is_none());
    let kernel = kernel
        .flag("B_VEC4", p.b_vec4())
        .with("WG", WG as f64)
        .with("BIAS", bias.map_or(0.0, |(_, per)| per as u32 as f64))
        .flag("RESIDUAL", epilogue.residual.is_some())
        .flag("GATED", gated);
    let params = Params {
        m: p.m as u32,
        n: p.n as u32,
        k: p.k as u32,
        k_chunk: split.1,
        a_m: p.a.major,
        a_k: p.a.minor,
        a_inner: p.a.inner,
        a_outer: p.a.outer,
        c_m: p.c.major,
        c_inner: p.c.inner,
        c_outer: p.c.outer,
        c_chunk: (out.numel() / split.0 as usize) as u32,
        relu: epilogue.relu_flag(),
        gate: epilogue.gate_flag(),
        ..p.b.params()
    };
    let [x, y] = p.groups();
    let bias_arg = bias.map_or(a, |(t, _)| t).bind(BIAS);
    // without a residual or a gate their bindings read `a` again
    let args = [
        a.bind(A),
        b.bind_vec4(B),
        bias_arg,
        out.bind(C),
        a.bind_vec4(A_VEC4),
        out.bind_vec4(C_VEC4),
        epilogue.residual.unwrap_or(a).bind_vec4(RESIDUAL),
        epilogue.gate.unwrap_or(a).bind_vec4(GATE),
    ];
    dispatch_with_copies(
        a.gpu(),
        (kernel, &params),
        (&args, true),
        [x as u32, y as u32, split.0],
        flops,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(m: usize, n: usize, k: usize) -> Product {
        Product {
            m,
            n,
            k,
            a: Layout::rows(k),
            b: BLayout::ByRows(Layout::rows(n)),
            c: Layout::rows(n),
        }
    }

    #[test]
    fn long_sums_are_split_within_the_loop_limit() {
        let (chunks, chunk) = product(64, 48, 200_000).split();
        assert!(chunk as usize <= MAX_K_CHUNK && chunk % 4 == 0);
        assert!(chunks as usize * chunk as usize >= 200_000);
        assert!((chunks as usize - 1) * (chunk as usize) < 200_000);
    }

    #[test]
    fn few_blocks_split_for_threads_and_many_do_not() {
        // a weight gradient: 64 x 48 outputs, K = 32 x 16 x 16
        assert!(product(64, 48, 8192).split().0 > 1);
        assert_eq!(product(512, 2048, 8192).split().0, 1);
        assert_eq!(product(64, 48, 1000).split().0, 1);
    }
}
