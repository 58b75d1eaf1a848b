//! The CPU set's products read their operands A and B from texture copies (see
//! `crate::gpu::Gpu::texture_copy`), recorded just before each launch.

use super::{A_TEX, B_TEX};
use crate::gpu::{BufferArg, Gpu, Kernel, TextureArg, UniformParams};

/// Records the texture copies of a product's operands `a` and `b` (their bindings' ranges,
/// rounded up to whole texels) for a kernel that reads them with `TEX`, and returns the two
/// slots' views and whether the copies were made. Where the device does not use copies, or a
/// range does not start on a texel or its last texel would pass its buffer's end, or a copy does
/// not fit, the kernel reads the buffers and binds the slots' textures unread.
fn operand_textures(gpu: &Gpu, a: &BufferArg, b: &BufferArg) -> ([wgpu::TextureView; 2], bool) {
    let texels = |x: &BufferArg| x.size.div_ceil(16) * 16;
    let whole =
        |x: &BufferArg| x.offset.is_multiple_of(16) && x.offset + texels(x) <= x.buffer.size();
    if gpu.texture_copies() && whole(a) && whole(b) {
        let a_copy = gpu.texture_copy(0, a.buffer, a.offset, texels(a));
        let b_copy = gpu.texture_copy(1, b.buffer, b.offset, texels(b));
        if let (Some(a_copy), Some(b_copy)) = (a_copy, b_copy) {
            return ([a_copy, b_copy], true);
        }
    }
    (
        [gpu.texture_placeholder(0), gpu.texture_placeholder(1)],
        false,
    )
}

/// Records `kernel` reading A and B (`args[0]` and `args[1]`) from texture copies where it can.
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
    let (views, copied) = operand_textures(gpu, &args[0], &args[1]);
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
