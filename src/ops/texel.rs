//! Host side of `shaders/texel.wgsl`: the functions that read the texture copies of storage
//! buffers the CPU kernel set makes (`crate::gpu::Gpu::texture_copy`; the row length
//! `TEXEL_ROW_SHIFT` is [`crate::gpu::TEXEL_ROW_SHIFT`]). It has no entry points of its
//! own: the families that read copies (`blocked`, `elementwise`, `adam`, `reduce`, `softmax`)
//! pass [`SOURCE`] to `Shader::reading_copies` (so `gpu` does not depend on `ops`), and it is
//! appended to them when they are compiled.
//! Its tests are those of the families that read copies, each against buffer reads bit for bit,
//! and `tests/shaders.rs`, which checks the row length of every family binding a texture.

/// The text of `shaders/texel.wgsl`.
pub const SOURCE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/texel.wgsl"));
