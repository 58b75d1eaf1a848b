// Causal attention over the positions of a sequence, in G independent groups (batch items x heads).
// Queries, keys, values and outputs are feature-major, as NCHW maps give them: Q and O [G, D, Lq],
// K and V [G, D, Lk]; scores and probabilities are [G, Lq, Lk]. Query i is the absolute position
// q0 + i and sees the keys j <= q0 + i; the entries of the others are written as 0 and never read.
// The products run one thread per 4 x 4 block of outputs (vec4 accumulators: a quarter of the loads
// of one thread per output), each output summed in increasing order of its loop index; terms
// outside the causal mask are skipped or added as exact zeros. So a row evaluated alone (q0 > 0,
// Lq = 1, as when sampling) gives the same bits as in the whole sequence. The softmax runs one
// thread per row. Every loop runs at most max(D, Lk) <= 65535 times (llvmpipe's bound on a loop).

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

// a[start + r * stride] for the r < 4 with first + r < len, else 0.
fn a4(start: u32, stride: u32, first: u32, len: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var r = 0u; r < 4u; r = r + 1u) {
        if (first + r < len) { v[r] = a[start + r * stride]; }
    }
    return v;
}

// b[start + r * stride] for the r < 4 with first + r < len, else 0.
fn b4(start: u32, stride: u32, first: u32, len: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var r = 0u; r < 4u; r = r + 1u) {
        if (first + r < len) { v[r] = b[start + r * stride]; }
    }
    return v;
}

// out[base + c] = v[c] for the c < 4 with first + c < len.
fn store4(base: u32, first: u32, len: u32, v: vec4<f32>) {
    for (var c = 0u; c < 4u; c = c + 1u) {
        if (first + c < len) { out[base + c] = v[c]; }
    }
}

// A 4 x 4 block of outputs: row r (v0 .. v3) at base + r * stride, for the rows row0 + r < rows
// and the columns col0 + c < cols.
fn store_block(base: u32, stride: u32, row0: u32, rows: u32, col0: u32, cols: u32,
               v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>) {
    if (row0 < rows) { store4(base, col0, cols, v0); }
    if (row0 + 1u < rows) { store4(base + stride, col0, cols, v1); }
    if (row0 + 2u < rows) { store4(base + 2u * stride, col0, cols, v2); }
    if (row0 + 3u < rows) { store4(base + 3u * stride, col0, cols, v3); }
}

// The keys query i sees, as a mask over keys j0 .. j0 + 3.
fn visible(i: u32, j0: u32) -> vec4<bool> {
    let last = p.q0 + i;
    return vec4<bool>(j0 <= last, j0 + 1u <= last, j0 + 2u <= last, j0 + 3u <= last);
}

// out[g, i, j] = scale * sum_d a[g, d, i] b[g, d, j] for j <= q0 + i (else 0), with a [G, D, Lq]
// and b [G, D, Lk]: the scores Q^T K, and in the backward the probabilities' gradient dO^T V.
// One thread per 4 x 4 block (queries i0.., keys j0..); blocks wholly above the diagonal only
// write zeros.
@compute @workgroup_size(256)
fn scores(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_id(gid, nwg);
    let jb = (p.keys + 3u) / 4u;
    let ib = (p.queries + 3u) / 4u;
    if (t >= p.groups * ib * jb) { return; }
    let j0 = (t % jb) * 4u;
    let i0 = ((t / jb) % ib) * 4u;
    let g = t / (jb * ib);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    if (j0 <= p.q0 + i0 + 3u) {
        let qa = g * p.dim * p.queries + i0;
        let kb = g * p.dim * p.keys + j0;
        for (var d = 0u; d < p.dim; d = d + 1u) {
            let av = a4(qa + d * p.queries, 1u, i0, p.queries);
            let bv = b4(kb + d * p.keys, 1u, j0, p.keys);
            acc0 = acc0 + av.x * bv;
            acc1 = acc1 + av.y * bv;
            acc2 = acc2 + av.z * bv;
            acc3 = acc3 + av.w * bv;
        }
    }
    let row = (g * p.queries + i0) * p.keys + j0;
    let zero = vec4<f32>(0.0);
    store_block(row, p.keys, i0, p.queries, j0, p.keys,
                select(zero, p.scale * acc0, visible(i0, j0)),
                select(zero, p.scale * acc1, visible(i0 + 1u, j0)),
                select(zero, p.scale * acc2, visible(i0 + 2u, j0)),
                select(zero, p.scale * acc3, visible(i0 + 3u, j0)));
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
// b [G, D, Lk]: the output P V^T, and in the backward the queries' gradient dS K^T. One thread per
// 4 x 4 block (features d0.., queries i0..); a query's terms past its last key are exact zeros.
@compute @workgroup_size(256)
fn mix(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_id(gid, nwg);
    let ib = (p.queries + 3u) / 4u;
    let db = (p.dim + 3u) / 4u;
    if (t >= p.groups * db * ib) { return; }
    let i0 = (t % ib) * 4u;
    let d0 = ((t / ib) % db) * 4u;
    let g = t / (ib * db);
    let rows = (g * p.queries + i0) * p.keys;
    let cols = (g * p.dim + d0) * p.keys;
    let lasts = vec4<u32>(last_key(i0), last_key(i0 + 1u), last_key(i0 + 2u), last_key(i0 + 3u));
    // the last key of the block's last query (the rows past Lq are not stored)
    let end = last_key(min(i0 + 3u, p.queries - 1u));
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var j = 0u; j <= end; j = j + 1u) {
        let pv = select(vec4<f32>(0.0), a4(rows + j, p.keys, i0, p.queries), vec4<u32>(j) <= lasts);
        let vv = b4(cols + j, p.keys, d0, p.dim);
        acc0 = acc0 + vv.x * pv;
        acc1 = acc1 + vv.y * pv;
        acc2 = acc2 + vv.z * pv;
        acc3 = acc3 + vv.w * pv;
    }
    store_block((g * p.dim + d0) * p.queries + i0, p.queries, d0, p.dim, i0, p.queries,
                p.scale * acc0, p.scale * acc1, p.scale * acc2, p.scale * acc3);
}

// out[g, d, j] = scale * sum_{i : q0 + i >= j} a[g, i, j] b[g, d, i], with a [G, Lq, Lk] and
// b [G, D, Lq]: the values' gradient P^T dO and the keys' gradient dS^T Q, [G, D, Lk]. One thread
// per 4 x 4 block (features d0.., keys j0..); the terms of queries before a key are exact zeros.
@compute @workgroup_size(256)
fn mix_transposed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_id(gid, nwg);
    let jb = (p.keys + 3u) / 4u;
    let db = (p.dim + 3u) / 4u;
    if (t >= p.groups * db * jb) { return; }
    let j0 = (t % jb) * 4u;
    let d0 = ((t / jb) % db) * 4u;
    let g = t / (jb * db);
    // the first query that sees key j0 (the block's other keys need later ones)
    let first = select(0u, j0 - p.q0, j0 > p.q0);
    let rows = g * p.queries * p.keys + j0;
    let cols = (g * p.dim + d0) * p.queries;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var i = first; i < p.queries; i = i + 1u) {
        let av = select(vec4<f32>(0.0), a4(rows + i * p.keys, 1u, j0, p.keys), visible(i, j0));
        let bv = b4(cols + i, p.queries, d0, p.dim);
        acc0 = acc0 + bv.x * av;
        acc1 = acc1 + bv.y * av;
        acc2 = acc2 + bv.z * av;
        acc3 = acc3 + bv.w * av;
    }
    store_block((g * p.dim + d0) * p.keys + j0, p.keys, d0, p.dim, j0, p.keys,
                p.scale * acc0, p.scale * acc1, p.scale * acc2, p.scale * acc3);
}
