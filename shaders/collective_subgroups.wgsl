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

var<workgroup> collective_scan: array<u32, 256>; // the flags, then each one's rank in its chunk
var<workgroup> collective_list: array<u32, 256>;
var<workgroup> collective_totals: array<u32, 256>; // flags set per chunk, then the chunk's offset
var<workgroup> collective_next: atomic<u32>; // the next chunk not yet taken, then the count

// workgroup_compact of collective.wgsl: the same list and count, over 4 workgroup barriers instead
// of 18. The flags fall into chunks of SUBGROUP_LANES. A subgroup takes chunks from a counter,
// lane j reading flag j of its chunk, and a subgroup prefix sum gives each flag its rank in the
// chunk and the chunk's total; one subgroup turns the totals into offsets; a kept thread's place
// is its chunk's offset plus its rank.
fn workgroup_compact(keep: bool, t: u32) -> u32 {
    collective_scan[t] = select(0u, 1u, keep);
    if (t == 0u) { atomicStore(&collective_next, 0u); }
    workgroupBarrier();
    let chunks = 256u / SUBGROUP_LANES;
    let lane = subgroupExclusiveAdd(1u);
    loop {
        var chunk = 0u;
        if (lane == 0u) { chunk = atomicAdd(&collective_next, 1u); }
        chunk = subgroupBroadcast(chunk, 0u);
        if (chunk >= chunks) { break; }
        let i = chunk * SUBGROUP_LANES + lane;
        let flag = select(0u, collective_scan[min(i, 255u)], lane < SUBGROUP_LANES);
        let rank = subgroupExclusiveAdd(flag);
        let total = subgroupAdd(flag);
        if (lane < SUBGROUP_LANES) { collective_scan[i] = rank; }
        if (lane == 0u) { collective_totals[chunk] = total; }
    }
    workgroupBarrier();
    // the chunks' totals become their offsets (an exclusive prefix sum), by the subgroup of thread 0
    if (subgroupAny(t == 0u)) {
        var carry = 0u;
        for (var first = 0u; first < chunks; first = first + SUBGROUP_LANES) {
            let c = first + lane;
            let inside = lane < SUBGROUP_LANES && c < chunks;
            let n = select(0u, collective_totals[min(c, 255u)], inside);
            let offset = carry + subgroupExclusiveAdd(n);
            if (inside) { collective_totals[c] = offset; }
            carry = carry + subgroupAdd(n);
        }
        if (t == 0u) { atomicStore(&collective_next, carry); }
    }
    workgroupBarrier();
    let place = collective_totals[t / SUBGROUP_LANES] + collective_scan[t];
    if (keep) { collective_list[place] = t; }
    // the counter holds the count now; the next call resets it only after the barrier below
    let count = atomicLoad(&collective_next);
    workgroupBarrier();
    return count;
}
