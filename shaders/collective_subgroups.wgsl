// Collective operations of a workgroup of 256 threads, with subgroup operations: the functions of
// collective.wgsl, same signatures, same results bit for bit, fewer workgroup barriers.

// A power of two no larger than the smallest subgroup the adapter makes (at most 128): the lanes
// that the last levels of a tree span.
override SUBGROUP_LANES: u32 = 1u;

var<workgroup> collective_scratch: array<f32, 256>;

// workgroup_sum of collective.wgsl: the same tree, whose levels at strides below SUBGROUP_LANES
// are taken by subgroup shuffles instead of through workgroup memory. Every subgroup takes them on
// partials 0 .. SUBGROUP_LANES - 1, lane j holding partial j, so the result does not depend on
// which threads make up a subgroup. Call it from control flow that all 256 threads reach, and put
// a workgroupBarrier between two calls.
fn workgroup_sum(value: f32, t: u32) -> f32 {
    collective_scratch[t] = value;
    workgroupBarrier();
    for (var stride = 128u; stride >= SUBGROUP_LANES; stride = stride / 2u) {
        if (t < stride) {
            collective_scratch[t] = collective_scratch[t] + collective_scratch[t + stride];
        }
        workgroupBarrier();
    }
    let lane = subgroupExclusiveAdd(1u);
    var partial = 0.0;
    if (lane < SUBGROUP_LANES) { partial = collective_scratch[lane]; }
    for (var stride = SUBGROUP_LANES / 2u; stride > 0u; stride = stride / 2u) {
        partial = partial + subgroupShuffleDown(partial, stride);
    }
    return subgroupBroadcast(partial, 0u);
}
