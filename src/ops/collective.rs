//! Host side of `shaders/collective.wgsl`: the library of operations of all the threads of a
//! workgroup together (`workgroup_sum`, `workgroup_compact`), in its plain version, paired here
//! with its subgroup version (`shaders/collective_subgroups.wgsl`, whose host side is
//! [`super::collective_subgroups`]). It has no entry points of its own: the families that
//! call it (`reduce`, `vq`, `gather`) declare it with `Shader::with_library`, and the kernel cache
//! appends the version the device uses (`crate::gpu::Collectives`). Its tests are those of the
//! families that call it, run over every version (`tests/reduce.rs`, `tests/gather.rs`,
//! `tests/vq.rs`).

use super::collective_subgroups;
use crate::gpu::Library;

/// `shaders/collective.wgsl` and its subgroup version `shaders/collective_subgroups.wgsl`.
pub static LIBRARY: Library = Library {
    stem: "collective",
    plain: include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/shaders/collective.wgsl"
    )),
    subgroups: collective_subgroups::SOURCE,
    lanes_override: collective_subgroups::LANES_OVERRIDE,
};
