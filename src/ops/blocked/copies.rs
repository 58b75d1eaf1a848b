//! The CPU set's kernels read their large operands, the ranges bound at A and B, from texture
//! copies (see `crate::gpu::Gpu::texture_copy`), recorded just before each launch: the products,
//! the nearest-code search, and the lowering's `im2col` (A) and `col2im` (B).

use super::{A, A_TEX, B, B_TEX};
use crate::gpu::{BufferArg, Gpu, Kernel, UniformParams};

/// Records `kernel` reading the ranges bound at A and B from texture copies where it can and
/// `copies` says (else from the buffers).
pub(super) fn dispatch_with_copies<P: UniformParams>(
    gpu: &Gpu,
    launch: (Kernel, &P),
    (args, copies): (&[BufferArg], bool),
    workgroups: [u32; 3],
    flops: f64,
) {
    let reads = [(A, A_TEX), (B, B_TEX)];
    gpu.dispatch_reading_copies(launch, args, (reads, copies), [workgroups; 2], flops);
}
