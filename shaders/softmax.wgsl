// Softmax family over the class axis of logits [B, K, S] (S positions per item, NCHW with S = H * W):
// per-position log-softmax cross-entropy, its gradient, and Gumbel-max sampling of one position.
// Every thread loops over at most K <= 16384 classes, within llvmpipe's 65535 back-edge bound.

struct Params {
    rows: u32,        // positions: B * S
    classes: u32,     // K
    positions: u32,   // S
    position: u32,       // sample: the position of the logits used
    seed: u32,           // sample: counter-based RNG key
    temperature: f32,    // sample: logits are divided by it; <= 0 takes the argmax
    grid_positions: u32, // sample: positions per item of the code grid written
    grid_position: u32,  // sample: the position drawn in the code grid (and the RNG counter)
    first_item: u32,     // sample: the index of item 0 in the whole draw (the RNG's item counter)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<f32>;    // class per position, [B, S]
@group(0) @binding(3) var<storage, read> upstream: array<f32>;   // gradient of the per-position loss
@group(0) @binding(4) var<storage, read> saved_lse: array<f32>;  // forward log-sum-exp per position
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse_out: array<f32>;
@group(0) @binding(7) var logits_tex: texture_2d<f32>; // cross_entropy_backward with TEX: copies
@group(0) @binding(8) var targets_tex: texture_2d<f32>;
@group(0) @binding(9) var upstream_tex: texture_2d<f32>;
@group(0) @binding(10) var lse_tex: texture_2d<f32>;

// cross_entropy_backward on the CPU kernel set (S a multiple of 4): a thread takes four logits of
// neighbouring positions and reads its four inputs from texture copies: the software driver loads
// a storage buffer element by element, lane by lane, but fetches texels with gathers.
override TEX: bool = false;

fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// index of logit (class 0) for position row r
fn row_base(r: u32) -> u32 {
    return (r / p.positions) * p.classes * p.positions + r % p.positions;
}

// out[r] = logsumexp_k logits[r, k] - logits[r, target[r]]; lse_out[r] = the log-sum-exp.
// One pass with a running maximum.
@compute @workgroup_size(256)
fn cross_entropy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = flat_id(gid, nwg);
    if (r >= p.rows) { return; }
    let base = row_base(r);
    var m = logits[base];
    var s = 1.0;
    for (var k = 1u; k < p.classes; k = k + 1u) {
        let v = logits[base + k * p.positions];
        if (v > m) {
            s = s * exp(m - v) + 1.0;
            m = v;
        } else {
            s = s + exp(v - m);
        }
    }
    let lse = m + log(s);
    lse_out[r] = lse;
    out[r] = lse - logits[base + u32(targets[r]) * p.positions];
}

// out[b, k, s] = upstream[b, s] * (softmax[b, k, s] - [k == target[b, s]]); one thread per logit,
// or with TEX per four (the same operations on each).
@compute @workgroup_size(256)
fn cross_entropy_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let unit = select(1u, 4u, TEX);
    let i = flat_id(gid, nwg) * unit;
    if (i >= p.rows * p.classes) { return; }
    let per_item = p.classes * p.positions;
    let k = (i % per_item) / p.positions;
    let r = (i / per_item) * p.positions + i % p.positions;
    var logit: vec4<f32>;
    var wanted: vec4<f32>;
    var up: vec4<f32>;
    var lse: vec4<f32>;
    if (TEX) {
        logit = texel(logits_tex, i / 4u);
        wanted = texel(targets_tex, r / 4u);
        up = texel(upstream_tex, r / 4u);
        lse = texel(lse_tex, r / 4u);
    } else {
        logit = vec4<f32>(logits[i]);
        wanted = vec4<f32>(targets[r]);
        up = vec4<f32>(upstream[r]);
        lse = vec4<f32>(saved_lse[r]);
    }
    let hit = select(vec4<f32>(0.0), vec4<f32>(1.0), vec4<u32>(k) == vec4<u32>(wanted));
    let g = up * (exp(logit - lse) - hit);
    for (var c = 0u; c < unit; c++) { out[i + c] = g[c]; }
}

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// A standard Gumbel variate from the counter (seed, item, position, class): -log(-log(u)), u in (0, 1).
fn gumbel(item: u32, k: u32) -> f32 {
    let h = pcg(k ^ pcg(p.grid_position ^ pcg(item ^ pcg(p.seed))));
    let u = (f32(h >> 8u) + 0.5) * (1.0 / 16777216.0);
    return -log(-log(u));
}

// out[b, grid_position] = argmax_k logits[b, k, position] / T + G_k (a draw from softmax(logits / T)),
// one thread per item; the rest of the code grid `out` [B, grid_positions] is left as it is. The logits
// cover either every position of the grid (position = grid_position) or only the one drawn (position 0).
@compute @workgroup_size(256)
fn sample(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat_id(gid, nwg);
    if (b * p.positions >= p.rows) { return; }
    let r = b * p.positions + p.position;
    let base = row_base(r);
    let greedy = p.temperature <= 0.0;
    let inv_t = select(1.0 / p.temperature, 1.0, greedy);
    var best = -3.4e38;
    var best_k = 0u;
    for (var k = 0u; k < p.classes; k = k + 1u) {
        var v = logits[base + k * p.positions] * inv_t;
        if (!greedy) { v = v + gumbel(p.first_item + b, k); }
        if (v > best) {
            best = v;
            best_k = k;
        }
    }
    out[b * p.grid_positions + p.grid_position] = f32(best_k);
}
