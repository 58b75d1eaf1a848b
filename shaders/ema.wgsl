// Per-code statistics and the exponential-moving-average codebook update (van den Oord et al. 2017,
// appendix), with Laplace-smoothed counts and dead-code restarts. Everything is deterministic: per-code
// sums visit the assigned vectors in index order, with no atomics.
// Vectors are read from NCHW: row n = (b, s), s < hw, has elements src[(b * D + d) * hw + s].

struct Params {
    n: u32,             // rows (batch * H * W)
    k: u32,             // codebook size
    d: u32,             // code dimension (at most 512 for code_sums)
    hw: u32,            // H * W
    decay: f32,         // EMA decay gamma
    eps: f32,           // Laplace smoothing epsilon
    seed: u32,          // restart: seed of the counter-based choice of replacement vectors
    restart_after: u32, // restart: steps a code may go unused
    segment: u32,       // code_sums: rows per segment (workgroup y); a multiple of 256
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- code_sums: counts[s, k] = #{n in segment s : code[n] = k}, sums[s, k, :] = sum of those rows ----
@group(0) @binding(1) var<storage, read> codes: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> counts_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> sums_out: array<f32>;

var<workgroup> scan: array<u32, 256>;
var<workgroup> hits: array<u32, 256>;

// One workgroup per (code, segment of rows): walk the segment 256 rows at a time, compact the hits of
// this code with a prefix sum (keeping index order), then add their vectors; thread t owns dims t and
// t + 256. Segments bound the work of one invocation (the software Vulkan driver stops loop nests after
// 65535 iterations); the host adds the segments' partial sums in order.
@compute @workgroup_size(256)
fn code_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let k = wid.x;
    let first = wid.y * p.segment;
    let last = min(p.n, first + p.segment);
    var acc0 = 0.0;
    var acc1 = 0.0;
    var count = 0u;
    for (var base = first; base < last; base = base + 256u) {
        let row = base + t;
        var hit = 0u;
        if (row < last && u32(codes[row]) == k) { hit = 1u; }
        scan[t] = hit;
        workgroupBarrier();
        for (var offset = 1u; offset < 256u; offset = offset * 2u) {
            var v = scan[t];
            if (t >= offset) { v = v + scan[t - offset]; }
            workgroupBarrier();
            scan[t] = v;
            workgroupBarrier();
        }
        if (hit == 1u) { hits[scan[t] - 1u] = row; }
        workgroupBarrier();
        let found = scan[255];
        for (var j = 0u; j < found; j = j + 1u) {
            let r = hits[j];
            let at = (r / p.hw) * p.d * p.hw + r % p.hw;
            if (t < p.d) { acc0 = acc0 + src[at + t * p.hw]; }
            if (t + 256u < p.d) { acc1 = acc1 + src[at + (t + 256u) * p.hw]; }
        }
        count = count + found;
        workgroupBarrier();
    }
    let slot = wid.y * p.k + k;
    if (t == 0u) { counts_out[slot] = f32(count); }
    if (t < p.d) { sums_out[slot * p.d + t] = acc0; }
    if (t + 256u < p.d) { sums_out[slot * p.d + t + 256u] = acc1; }
}

// ---- ema_accumulate: N_k <- g N_k + (1 - g) n_k, m_k <- g m_k + (1 - g) sum_k ----
@group(0) @binding(5) var<storage, read> step_counts: array<f32>;
@group(0) @binding(6) var<storage, read> step_sums: array<f32>;
@group(0) @binding(7) var<storage, read_write> cluster_size: array<f32>;
@group(0) @binding(8) var<storage, read_write> embed_avg: array<f32>;

@compute @workgroup_size(256)
fn ema_accumulate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.k * p.d) { return; }
    embed_avg[i] = p.decay * embed_avg[i] + (1.0 - p.decay) * step_sums[i];
    if (i % p.d == 0u) {
        let k = i / p.d;
        cluster_size[k] = p.decay * cluster_size[k] + (1.0 - p.decay) * step_counts[k];
    }
}

// ---- ema_normalize: e_k = m_k / ((N_k + eps) / (n + K eps) * n), n = sum_k N_k ----
@group(0) @binding(9) var<storage, read> total: array<f32>;
@group(0) @binding(10) var<storage, read> smoothed_size: array<f32>;
@group(0) @binding(11) var<storage, read> averages: array<f32>;
@group(0) @binding(12) var<storage, read_write> codebook: array<f32>;

@compute @workgroup_size(256)
fn ema_normalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.k * p.d) { return; }
    let n = total[0];
    let size = (smoothed_size[i / p.d] + p.eps) / (n + f32(p.k) * p.eps) * n;
    codebook[i] = averages[i] / size;
}

// ---- restart_dead: codes unused for `restart_after` steps take a vector of the current batch ----
@group(0) @binding(13) var<storage, read> usage: array<f32>;
@group(0) @binding(14) var<storage, read> vectors: array<f32>;
@group(0) @binding(15) var<storage, read_write> unused_steps: array<f32>;
@group(0) @binding(16) var<storage, read_write> restart_codebook: array<f32>;
@group(0) @binding(17) var<storage, read_write> restart_avg: array<f32>;
@group(0) @binding(18) var<storage, read_write> restart_size: array<f32>;
@group(0) @binding(19) var<storage, read_write> restarted: array<f32>;

// PCG hash: a counter-based random number from (seed, code)
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

@compute @workgroup_size(256)
fn restart_dead(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * 256u;
    if (k >= p.k) { return; }
    restarted[k] = 0.0;
    if (usage[k] > 0.0) {
        unused_steps[k] = 0.0;
        return;
    }
    let idle = unused_steps[k] + 1.0;
    if (idle < f32(p.restart_after)) {
        unused_steps[k] = idle;
        return;
    }
    let row = pcg(pcg(p.seed) ^ k) % p.n;
    let at = (row / p.hw) * p.d * p.hw + row % p.hw;
    for (var d = 0u; d < p.d; d = d + 1u) {
        let v = vectors[at + d * p.hw];
        restart_codebook[k * p.d + d] = v;
        restart_avg[k * p.d + d] = v;
    }
    restart_size[k] = 1.0;
    unused_steps[k] = 0.0;
    restarted[k] = 1.0;
}
