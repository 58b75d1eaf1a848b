// Collective operations of a workgroup of 256 threads, without subgroup operations: the version
// for adapters that lack them. collective_subgroups.wgsl defines the same functions, which return
// the same results bit for bit; the host appends one of the two files to every kernel family that
// calls them.

var<workgroup> collective_scratch: array<f32, 256>;

// The sum of one value per thread t < 256 by a fixed tree: at stride 128, 64, ..., 1, the partial
// of thread t < stride adds that of thread t + stride. Every thread gets the result. Call it from
// control flow that all 256 threads reach, and put a workgroupBarrier between two calls.
fn workgroup_sum(value: f32, t: u32) -> f32 {
    collective_scratch[t] = value;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        if (t < stride) {
            collective_scratch[t] = collective_scratch[t] + collective_scratch[t + stride];
        }
        workgroupBarrier();
    }
    return collective_scratch[0];
}

var<workgroup> collective_scan: array<u32, 256>;
var<workgroup> collective_list: array<u32, 256>;

// The threads t < 256 whose `keep` holds, in increasing order: collective_list[0 .. count) after
// the call, and count returned to every thread. Here by an inclusive prefix sum of the flags over
// 8 doubling steps. Call it from control flow that all 256 threads reach, and put a
// workgroupBarrier between reading collective_list and the next call.
fn workgroup_compact(keep: bool, t: u32) -> u32 {
    collective_scan[t] = select(0u, 1u, keep);
    workgroupBarrier();
    for (var offset = 1u; offset < 256u; offset = offset * 2u) {
        var v = collective_scan[t];
        if (t >= offset) { v = v + collective_scan[t - offset]; }
        workgroupBarrier();
        collective_scan[t] = v;
        workgroupBarrier();
    }
    if (keep) { collective_list[collective_scan[t] - 1u] = t; }
    workgroupBarrier();
    return collective_scan[255];
}
