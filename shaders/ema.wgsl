// The exponential-moving-average codebook update (van den Oord et al. 2017, appendix), with
// Laplace-smoothed counts, and dead-code restarts. The per-code counts and sums of a step come from
// `index_sums` of gather.wgsl. Vectors are read from NCHW: row n = (b, s), s < hw, has elements
// vectors[(b * D + d) * hw + s].

struct Params {
    n: u32,             // rows (batch * H * W)
    k: u32,             // codebook size
    d: u32,             // code dimension
    hw: u32,            // H * W
    decay: f32,         // EMA decay gamma
    eps: f32,           // Laplace smoothing epsilon
    seed: u32,          // restart: seed of the counter-based choice of replacement vectors
    restart_after: u32, // restart: steps a code may go unused
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- ema_accumulate: N_k <- g N_k + (1 - g) n_k, m_k <- g m_k + (1 - g) sum_k ----
@group(0) @binding(1) var<storage, read> step_counts: array<f32>;
@group(0) @binding(2) var<storage, read> step_sums: array<f32>;
@group(0) @binding(3) var<storage, read_write> cluster_size: array<f32>;
@group(0) @binding(4) var<storage, read_write> embed_avg: array<f32>;

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
@group(0) @binding(5) var<storage, read> total: array<f32>;
@group(0) @binding(6) var<storage, read> smoothed_size: array<f32>;
@group(0) @binding(7) var<storage, read> averages: array<f32>;
@group(0) @binding(8) var<storage, read_write> codebook: array<f32>;

@compute @workgroup_size(256)
fn ema_normalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.k * p.d) { return; }
    let n = total[0];
    let size = (smoothed_size[i / p.d] + p.eps) / (n + f32(p.k) * p.eps) * n;
    codebook[i] = averages[i] / size;
}

// ---- restart_dead: codes unused for `restart_after` steps take a vector of the current batch ----
@group(0) @binding(9) var<storage, read> usage: array<f32>;
@group(0) @binding(10) var<storage, read> vectors: array<f32>;
@group(0) @binding(11) var<storage, read_write> unused_steps: array<f32>;
@group(0) @binding(12) var<storage, read_write> restart_codebook: array<f32>;
@group(0) @binding(13) var<storage, read_write> restart_avg: array<f32>;
@group(0) @binding(14) var<storage, read_write> restart_size: array<f32>;
@group(0) @binding(15) var<storage, read_write> restarted: array<f32>;

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
