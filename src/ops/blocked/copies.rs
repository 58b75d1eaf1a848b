//! The CPU set's kernels read their large operands, the ranges bound at A and B, from texture
//! copies (see `crate::gpu::Gpu::texture_copy`), recorded just before each launch: the products,
//! the nearest-code search, and the lowering's `im2col` (A) and `col2im` (B).

use super::{A, A_TEX, B, B_TEX};
use crate::gpu::{BufferArg, Gpu, Kernel, TextureArg, UniformParams};

/// Records the texture copies of the ranges of `args` bound at A (slot 0) and B (slot 1), rounded
/// up to whole texels, for a kernel that reads them with `TEX`, and returns the two slots' views
/// and whether every copy was made. Where the device does not use copies, or a range does not
/// start on a texel or its last texel would pass its buffer's end, or a copy does not fit, the
/// kernel reads the buffers and binds the slots' textures unread.
fn operand_textures(gpu: &Gpu, args: &[BufferArg]) -> ([wgpu::TextureView; 2], bool) {
    let operands = [A, B].map(|binding| args.iter().find(|a| a.binding == binding));
    let texels = |x: &BufferArg| x.size.div_ceil(16) * 16;
    // checked for every operand before any copy is recorded, so that none is made in vain
    let copyable = |x: &BufferArg| {
        x.offset.is_multiple_of(16)
            && x.offset + texels(x) <= x.buffer.size()
            && gpu.texture_copy_fits(texels(x))
    };
    let placeholders = || [gpu.texture_placeholder(0), gpu.texture_placeholder(1)];
    if !gpu.texture_copies() || !operands.iter().flatten().all(|x| copyable(x)) {
        return (placeholders(), false);
    }
    let mut views = placeholders();
    for (slot, operand) in operands.iter().enumerate() {
        if let Some(x) = operand {
            views[slot] = gpu
                .texture_copy(slot, x.buffer, x.offset, texels(x))
                .expect("the copy was checked to fit");
        }
    }
    (views, true)
}

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
    let (views, copied) = operand_textures(gpu, args);
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
