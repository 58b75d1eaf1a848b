//! The contract between a WGSL file and its host module: the embedded source, the layout of its
//! uniform `Params` block, its storage bindings by name, and the override values the host uses.
//! `tests/shaders.rs` reads every shader with naga and checks it against these declarations, so
//! the two languages cannot drift apart silently.

use std::borrow::Cow;

/// How a kernel sees one of its bindings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
    /// `var name: texture_2d<f32>`, read with `textureLoad` (a copy of a storage buffer, see
    /// [`crate::gpu::Gpu::texture_copy`]).
    Texture,
}

/// One `@group(0) @binding(index) var<storage, ...> name` (or texture) of a shader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The `@binding` index (0 is always the uniform `Params` block).
    pub index: u32,
    /// The WGSL variable name.
    pub name: &'static str,
    /// Read-only, read-write or a texture, as declared in WGSL.
    pub access: Access,
}

impl Binding {
    /// A `var<storage, read>` binding.
    pub const fn read(index: u32, name: &'static str) -> Self {
        Self {
            index,
            name,
            access: Access::Read,
        }
    }

    /// A `var<storage, read_write>` binding.
    pub const fn read_write(index: u32, name: &'static str) -> Self {
        Self {
            index,
            name,
            access: Access::ReadWrite,
        }
    }

    /// A `texture_2d<f32>` binding.
    pub const fn texture(index: u32, name: &'static str) -> Self {
        Self {
            index,
            name,
            access: Access::Texture,
        }
    }
}

/// One named member of a uniform block: its byte offset and its WGSL scalar type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The member name (the same in Rust and WGSL).
    pub name: &'static str,
    /// Byte offset in the block.
    pub offset: usize,
    /// WGSL type: `u32`, `i32` or `f32` (empty for a padding array).
    pub ty: &'static str,
}

/// The layout of a Rust uniform struct: its size and its fields in order. Fields whose names
/// start with `_` are padding, which the layout check skips on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamsLayout {
    /// Size in bytes.
    pub size: usize,
    /// Every field, in declaration order.
    pub fields: &'static [Field],
}

/// A Rust struct uploaded as a kernel's uniform block; implemented by [`crate::uniform_params!`].
pub trait UniformParams: bytemuck::NoUninit {
    /// Its layout, for the check against the WGSL `Params` struct.
    const LAYOUT: ParamsLayout;
}

/// The WGSL name of a scalar field type of a uniform block (padding arrays have none).
pub trait WgslScalar {
    /// `u32`, `i32` or `f32`; empty for padding.
    const NAME: &'static str;
}

impl WgslScalar for u32 {
    const NAME: &'static str = "u32";
}
impl WgslScalar for i32 {
    const NAME: &'static str = "i32";
}
impl WgslScalar for f32 {
    const NAME: &'static str = "f32";
}
impl<T, const N: usize> WgslScalar for [T; N] {
    const NAME: &'static str = "";
}

/// Values an override constant takes in the host code. Each axis lists alternative assignments
/// (one or more constants set together); the shader is specialised for every combination of
/// axes. Boolean overrides need no axis: they are checked with both values.
pub type OverrideAxis = &'static [&'static [(&'static str, f64)]];

/// A kernel family: one WGSL file in `shaders/`, owned by the `ops` module of the same stem.
#[derive(Debug)]
pub struct Shader {
    /// The file stem: `shaders/{stem}.wgsl`, host side `src/ops/{stem}.rs`.
    pub stem: &'static str,
    /// The WGSL source, embedded at build time.
    pub source: &'static str,
    /// The Rust module that owns it (`module_path!()` of the ops module).
    pub module: &'static str,
    /// Layout of the uniform block at binding 0 (the WGSL struct `Params`).
    pub params: ParamsLayout,
    /// Every storage buffer and texture binding of the file.
    pub bindings: &'static [Binding],
    /// The values of the file's non-boolean override constants the host uses.
    pub overrides: &'static [OverrideAxis],
    /// Whether the file uses subgroup operations (compiled only on devices that have them).
    pub subgroups: bool,
    /// The functions the file calls but does not define, appended to it when it is compiled.
    pub library: Option<&'static Library>,
    /// The functions that read texture copies (`shaders/texel.wgsl`, [`crate::ops::texel`]) when
    /// the file reads them, appended to it when it is compiled.
    pub copy_readers: Option<&'static str>,
}

impl Shader {
    /// The file name under `shaders/`.
    pub fn file_name(&self) -> String {
        format!("{}.wgsl", self.stem)
    }

    /// The same family, compiled with `library` appended.
    pub const fn with_library(mut self, library: &'static Library) -> Self {
        self.library = Some(library);
        self
    }

    /// The same family, compiled with `texel`, the text of `shaders/texel.wgsl`, appended.
    pub const fn reading_copies(mut self, texel: &'static str) -> Self {
        self.copy_readers = Some(texel);
        self
    }

    /// Whether the file reads texture copies.
    pub fn reads_copies(&self) -> bool {
        self.copy_readers.is_some()
    }

    /// The WGSL to compile: the file, followed by `shaders/texel.wgsl` if it reads texture copies,
    /// and by its library's version with subgroup operations if `subgroups`, else by the version
    /// without.
    pub fn wgsl(&self, subgroups: bool) -> Cow<'static, str> {
        let texel = self.copy_readers.unwrap_or("");
        match self.library {
            None if !self.reads_copies() => Cow::Borrowed(self.source),
            None => Cow::Owned(format!("{}\n{texel}", self.source)),
            Some(library) => {
                let functions = if subgroups {
                    library.subgroups
                } else {
                    library.plain
                };
                Cow::Owned(format!("{}\n{texel}\n{functions}", self.source))
            }
        }
    }
}

/// WGSL functions that kernel families call, in two files with the same functions and results
/// that agree bit for bit: `shaders/{stem}.wgsl` without subgroup operations, for every adapter,
/// and `shaders/{stem}_subgroups.wgsl` with them, for adapters that have them.
#[derive(Debug)]
pub struct Library {
    /// The file stem of the version without subgroup operations.
    pub stem: &'static str,
    /// The version without subgroup operations.
    pub plain: &'static str,
    /// The version with subgroup operations.
    pub subgroups: &'static str,
    /// The subgroup version's override constant: how many lanes its subgroup operations span, a
    /// power of two no larger than the adapter's smallest subgroup.
    pub lanes_override: &'static str,
}

impl Library {
    /// The file names under `shaders/` of the plain and the subgroup version.
    pub fn file_names(&self) -> [String; 2] {
        [
            format!("{}.wgsl", self.stem),
            format!("{}_subgroups.wgsl", self.stem),
        ]
    }
}

/// Declares a `#[repr(C)]` uniform struct and implements [`UniformParams`] for it, recording the
/// name, offset and type of every field.
#[macro_export]
macro_rules! uniform_params {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $ty),*
        }

        impl $crate::gpu::UniformParams for $name {
            const LAYOUT: $crate::gpu::ParamsLayout = $crate::gpu::ParamsLayout {
                size: ::std::mem::size_of::<$name>(),
                fields: &[$($crate::gpu::Field {
                    name: stringify!($field),
                    offset: ::std::mem::offset_of!($name, $field),
                    ty: <$ty as $crate::gpu::WgslScalar>::NAME,
                }),*],
            };
        }
    };
}

/// The [`Shader`] of `shaders/{stem}.wgsl`, declared in the ops module of the same stem:
/// `shader!("vq", Params, [Z, CODEBOOK], overrides: [])`.
#[macro_export]
macro_rules! shader {
    ($stem:literal, $params:ty, [$($binding:expr),* $(,)?] $(, overrides: [$($axis:expr),* $(,)?])?) => {
        $crate::shader!(@build $stem, $params, [$($binding),*], false, [$($($axis),*)?])
    };
    ($stem:literal, $params:ty, [$($binding:expr),* $(,)?], subgroups $(, overrides: [$($axis:expr),* $(,)?])?) => {
        $crate::shader!(@build $stem, $params, [$($binding),*], true, [$($($axis),*)?])
    };
    (@build $stem:literal, $params:ty, [$($binding:expr),*], $subgroups:expr, [$($axis:expr),*]) => {
        $crate::gpu::Shader {
            stem: $stem,
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $stem, ".wgsl")),
            module: module_path!(),
            params: <$params as $crate::gpu::UniformParams>::LAYOUT,
            bindings: &[$($binding),*],
            overrides: &[$($axis),*],
            subgroups: $subgroups,
            library: None,
            copy_readers: None,
        }
    };
}
