// Causal attention over the positions of a sequence, in G independent groups (batch items x heads).
// Queries, keys, values and outputs are feature-major, as NCHW maps give them: Q and O [G, D, Lq],
// K and V [G, D, Lk]; scores and probabilities are [G, Lq, Lk]. Query i is the absolute position
// q0 + i and sees the keys j <= q0 + i; the entries of the others are written as 0 and never read.
// One thread per output, each summing in increasing order of its loop index: a row evaluated alone
// (q0 > 0, Lq = 1, as when sampling) gives the same bits as in the whole sequence. Every loop runs
// at most max(D, Lk) <= 65535 times (llvmpipe's bound on a loop).

struct Params {
    groups: u32,  // G
    dim: u32,     // D
    queries: u32, // Lq
    keys: u32,    // Lk
    q0: u32,      // absolute position of query 0
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// the last key query i may see
fn last_key(i: u32) -> u32 {
    return min(p.q0 + i, p.keys - 1u);
}

// out[g, i, j] = scale * sum_d a[g, d, i] b[g, d, j] for j <= q0 + i (else 0), with a [G, D, Lq]
// and b [G, D, Lk]: the scores Q^T K, and in the backward the probabilities' gradient dO^T V.
@compute @workgroup_size(256)
fn scores(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_id(gid, nwg);
    if (t >= p.groups * p.queries * p.keys) { return; }
    let j = t % p.keys;
    let i = (t / p.keys) % p.queries;
    let g = t / (p.keys * p.queries);
    if (j > p.q0 + i) {
        out[t] = 0.0;
        return;
    }
    let qa = g * p.dim * p.queries + i;
    let kb = g * p.dim * p.keys + j;
    var s = 0.0;
    for (var d = 0u; d < p.dim; d = d + 1u) {
        s = s + a[qa + d * p.queries] * b[kb + d * p.keys];
    }
    out[t] = p.scale * s;
}

// out[g, i, :] = softmax over the visible keys of the scores a[g, i, :]; one thread per row.
@compute @workgroup_size(256)
fn softmax(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = flat_id(gid, nwg);
    if (r >= p.groups * p.queries) { return; }
    let base = r * p.keys;
    let last = last_key(r % p.queries);
    var m = a[base];
    for (var j = 1u; j <= last; j = j + 1u) {
        m = max(m, a[base + j]);
    }
    var total = 0.0;
    for (var j = 0u; j <= last; j = j + 1u) {
        let e = exp(a[base + j] - m);
        out[base + j] = e;
        total = total + e;
    }
    let inv = 1.0 / total;
    for (var j = 0u; j < p.keys; j = j + 1u) {
        if (j <= last) {
            out[base + j] = out[base + j] * inv;
        } else {
            out[base + j] = 0.0;
        }
    }
}

// The softmax's backward: out[g, i, j] = P (dP - sum_j' P dP) along the row, with the
// probabilities P in a and their gradient dP in b; one thread per row.
@compute @workgroup_size(256)
fn softmax_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = flat_id(gid, nwg);
    if (r >= p.groups * p.queries) { return; }
    let base = r * p.keys;
    let last = last_key(r % p.queries);
    var dot = 0.0;
    for (var j = 0u; j <= last; j = j + 1u) {
        dot = dot + a[base + j] * b[base + j];
    }
    for (var j = 0u; j < p.keys; j = j + 1u) {
        if (j <= last) {
            out[base + j] = a[base + j] * (b[base + j] - dot);
        } else {
            out[base + j] = 0.0;
        }
    }
}

// out[g, d, i] = scale * sum_{j <= q0 + i} a[g, i, j] b[g, d, j], with a [G, Lq, Lk] and
// b [G, D, Lk]: the output P V^T, and in the backward the queries' gradient dS K^T.
@compute @workgroup_size(256)
fn mix(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_id(gid, nwg);
    if (t >= p.groups * p.dim * p.queries) { return; }
    let i = t % p.queries;
    let d = (t / p.queries) % p.dim;
    let g = t / (p.queries * p.dim);
    let row = (g * p.queries + i) * p.keys;
    let col = (g * p.dim + d) * p.keys;
    let last = last_key(i);
    var s = 0.0;
    for (var j = 0u; j <= last; j = j + 1u) {
        s = s + a[row + j] * b[col + j];
    }
    out[t] = p.scale * s;
}

// out[g, d, j] = scale * sum_{i : q0 + i >= j} a[g, i, j] b[g, d, i], with a [G, Lq, Lk] and
// b [G, D, Lq]: the values' gradient P^T dO and the keys' gradient dS^T Q, [G, D, Lk].
@compute @workgroup_size(256)
fn mix_transposed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_id(gid, nwg);
    if (t >= p.groups * p.dim * p.keys) { return; }
    let j = t % p.keys;
    let d = (t / p.keys) % p.dim;
    let g = t / (p.keys * p.dim);
    let first = select(0u, j - p.q0, j > p.q0);
    let rows = g * p.queries * p.keys + j;
    let col = (g * p.dim + d) * p.queries;
    var s = 0.0;
    for (var i = first; i < p.queries; i = i + 1u) {
        s = s + a[rows + i * p.keys] * b[col + i];
    }
    out[t] = p.scale * s;
}
