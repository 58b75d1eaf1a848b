// Embedding lookups: gather the table rows chosen by an index grid into NCHW, and its adjoint, the
// per-index counts and sums of vectors. Indices are f32 holding exact integers (below 2^24). Vectors
// are NCHW: position n = (b, s) with s < hw = H*W has elements v[(b * D + d) * hw + s].
// Everything is deterministic: per-index sums visit the positions in index order, with no atomics.

struct Params {
    n: u32,       // positions (batch * H * W)
    k: u32,       // table rows (indices are below k)
    d: u32,       // vector dimension
    hw: u32,      // H * W
    segment: u32, // index_sums: positions per segment (workgroup y); a multiple of 256
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> indices: array<f32>;        // [B, H, W]
@group(0) @binding(2) var<storage, read> table: array<f32>;          // gather: [K, D]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;      // gather: [B, D, H, W]
@group(0) @binding(4) var<storage, read> src: array<f32>;            // index_sums: [B, D, H, W]
@group(0) @binding(5) var<storage, read_write> counts_out: array<f32>; // index_sums: [segments, K]
@group(0) @binding(6) var<storage, read_write> sums_out: array<f32>;   // index_sums: [segments, K, D]

// out[b, d, s] = table[index[b * hw + s], d]
@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n * p.d) { return; }
    let s = i % p.hw;
    let d = (i / p.hw) % p.d;
    let b = i / (p.hw * p.d);
    let row = u32(indices[b * p.hw + s]);
    out[i] = table[row * p.d + d];
}

// counts[s, k] = #{n in segment s : index[n] = k}, sums[s, k, :] = the sum of those vectors.
// One workgroup per (index k = x, segment of positions = y, block of 512 dims = z): walk the segment 256
// positions at a time, list the hits of k in index order (`workgroup_compact` of collective.wgsl or
// collective_subgroups.wgsl, which the host appends), then add their vectors; thread t owns dims t
// and t + 256 of its block. Segments bound the work of one invocation (the software Vulkan driver
// stops loop nests after 65535 iterations); the host adds the segments' partial sums in order.
@compute @workgroup_size(256)
fn index_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let k = wid.x;
    let first = wid.y * p.segment;
    let last = min(p.n, first + p.segment);
    let d0 = wid.z * 512u + t;
    let d1 = d0 + 256u;
    var acc0 = 0.0;
    var acc1 = 0.0;
    var count = 0u;
    for (var base = first; base < last; base = base + 256u) {
        let row = base + t;
        let found = workgroup_compact(row < last && u32(indices[row]) == k, t);
        for (var j = 0u; j < found; j = j + 1u) {
            let r = base + collective_list[j];
            let at = (r / p.hw) * p.d * p.hw + r % p.hw;
            if (d0 < p.d) { acc0 = acc0 + src[at + d0 * p.hw]; }
            if (d1 < p.d) { acc1 = acc1 + src[at + d1 * p.hw]; }
        }
        count = count + found;
        workgroupBarrier();
    }
    let slot = wid.y * p.k + k;
    if (t == 0u && wid.z == 0u) { counts_out[slot] = f32(count); }
    if (d0 < p.d) { sums_out[slot * p.d + d0] = acc0; }
    if (d1 < p.d) { sums_out[slot * p.d + d1] = acc1; }
}

// index_sums for CPU adapters (the CPU kernel set): one invocation per index k, walking the
// positions of its segment in order and adding the vectors of its hits into its own slots: no
// workgroup memory, no barriers. A segment holds at most 60000 / (2 D + 2) positions, so that one
// invocation stays below the software driver's limit of 65535 loop iterations.
@compute @workgroup_size(64)
fn index_sums_by_index(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let k = gid.x;
    if (k >= p.k) { return; }
    let first = wid.y * p.segment;
    let last = min(p.n, first + p.segment);
    let slot = wid.y * p.k + k;
    var count = 0u;
    for (var row = first; row < last; row = row + 1u) {
        if (u32(indices[row]) == k) {
            let at = (row / p.hw) * p.d * p.hw + row % p.hw;
            for (var d = 0u; d < p.d; d = d + 1u) {
                var sum = src[at + d * p.hw];
                if (count > 0u) { sum = sum + sums_out[slot * p.d + d]; }
                sums_out[slot * p.d + d] = sum;
            }
            count = count + 1u;
        }
    }
    if (count == 0u) {
        for (var d = 0u; d < p.d; d = d + 1u) { sums_out[slot * p.d + d] = 0.0; }
    }
    counts_out[slot] = f32(count);
}
