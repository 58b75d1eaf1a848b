//! The CPU set's kernels read their large operands, the ranges bound at A and B, from texture
//! copies (see `crate::gpu::Gpu::texture_copy`), recorded just before each launch: the products,
//! the nearest-code search, and the lowering's `im2col` (A) and `col2im` (B).

use super::{A, A_TEX, B, B_TEX};
use crate::gpu::{BufferArg, Gpu, Kernel, TextureArg, UniformParams};

/// Records `kernel` reading the ranges bound at A and B from texture copies where it can.
pub(super) fn dispatch_with_copies<P: UniformParams>(
    gpu: &Gpu,
    (kernel, params): (Kernel, &P),
    args: &[BufferArg],
    workgroups: [u32; 3],
    flops: f64,
) {
    if workgroups.contains(&0) {
        return;
    }
    let operands = [A, B].map(|binding| args.iter().find(|a| a.binding == binding));
    let copies = gpu.operand_copies(operands);
    let copied = copies.is_some();
    let views = copies.unwrap_or_else(|| gpu.texture_placeholders());
    let textures = [
        TextureArg {
            binding: A_TEX,
            view: &views[0],
        },
        TextureArg {
            binding: B_TEX,
            view: &views[1],
        },
    ];
    let kernel = kernel.flag("TEX", copied);
    gpu.dispatch_with_textures(&kernel, params, (args, &textures), workgroups, flops);
}
