//! Host side of `shaders/collective_subgroups.wgsl`: the subgroup version of the `collective`
//! library (`workgroup_sum` with its last tree levels taken by subgroup shuffles,
//! `workgroup_compact` ranked by subgroup prefix sums), with the same results bit for bit as
//! `shaders/collective.wgsl`. [`super::collective::LIBRARY`] pairs the two; the kernel cache
//! appends this version to the families that call the library where the adapter has subgroups
//! (`crate::gpu::Collectives`).

/// The text of `shaders/collective_subgroups.wgsl`.
pub const SOURCE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/shaders/collective_subgroups.wgsl"
));

/// Its override constant: how many lanes its subgroup operations span, a power of two no larger
/// than the adapter's smallest subgroup.
pub const LANES_OVERRIDE: &str = "SUBGROUP_LANES";
