// Deterministic reductions: every sum is taken in a fixed order (per-workgroup partials reduced by a
// fixed tree, then a final pass over the partials); no atomics. The tree is `workgroup_sum` of
// collective.wgsl or collective_subgroups.wgsl, which the host appends.

struct Params {
    n: u32,      // elements reduced (sum_chunks / sq_diff_chunks), or outputs (sum_mid / mse_backward)
    chunk: u32,  // elements per workgroup (sum_chunks / sq_diff_chunks)
    outer: u32,
    mid: u32,
    inner: u32,
    relu: u32,   // sum_mid: 1 writes max(sum, 0)
    scale: f32,
    add: u32,    // sum_mid: 1 writes b[i] + sum (before the ReLU)
    gate: u32,   // sum_mid: 1 writes the result where g[i] > 0, else 0 (last)
    run: u32,        // sum_mid: when not 0, sum i goes to (i / run) * run_stride + i % run (and b, g
    run_stride: u32, // are read there)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<f32>; // mse_backward: the upstream scalar; sum_mid: the gate
@group(0) @binding(5) var a_tex: texture_2d<f32>; // sum_outer_inner_serial with TEX: a's copy

// sum_outer_inner_serial (the CPU kernel set) reads a from a texture copy: the software driver
// loads a storage buffer element by element, lane by lane, but fetches texels with gathers.
override TEX: bool = false;

// Element e of a, from its copy with TEX (`texel` and `component` of texel.wgsl, which the host
// appends).
fn a_at(e: u32) -> f32 {
    if (TEX) { return component(texel(a_tex, e >> 2u), e & 3u); }
    return a[e];
}

// Elements e .. e + 3 of a (e a multiple of 4): one texel of its copy with TEX.
fn a4_at(e: u32) -> vec4<f32> {
    if (TEX) { return texel(a_tex, e >> 2u); }
    return vec4<f32>(a[e], a[e + 1u], a[e + 2u], a[e + 3u]);
}

fn group_id(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// out[w] = scale * sum(a[w * chunk .. (w + 1) * chunk])
@compute @workgroup_size(256)
fn sum_chunks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let w = group_id(wid, nwg);
    let start = w * p.chunk;
    let end = min(start + p.chunk, p.n);
    var acc = 0.0;
    for (var i = start + lid; i < end; i = i + 256u) {
        acc = acc + a[i];
    }
    let total = workgroup_sum(acc, lid);
    if (lid == 0u) { out[w] = p.scale * total; }
}

// out[w] = scale * sum((a - b)^2) over the chunk   (first pass of the MSE)
@compute @workgroup_size(256)
fn sq_diff_chunks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let w = group_id(wid, nwg);
    let start = w * p.chunk;
    let end = min(start + p.chunk, p.n);
    var acc = 0.0;
    for (var i = start + lid; i < end; i = i + 256u) {
        let d = a[i] - b[i];
        acc = acc + d * d;
    }
    let total = workgroup_sum(acc, lid);
    if (lid == 0u) { out[w] = p.scale * total; }
}

// a viewed as [outer, mid, inner]: out[o, s] = scale * sum_m a[o, m, s], with the epilogue of the
// flags (residual, ReLU, gate), or scattered in runs (see `run`); one thread per output
@compute @workgroup_size(256)
fn sum_mid(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let s = i % p.inner;
    let o = i / p.inner;
    var acc = 0.0;
    for (var m = 0u; m < p.mid; m = m + 1u) {
        acc = acc + a[(o * p.mid + m) * p.inner + s];
    }
    var at = i;
    if (p.run > 0u) { at = (i / p.run) * p.run_stride + i % p.run; }
    var v = p.scale * acc;
    if (p.add == 1u) { v = b[at] + v; }
    if (p.relu == 1u) { v = max(v, 0.0); }
    if (p.gate == 1u) { v = select(0.0, v, g[at] > 0.0); }
    out[at] = v;
}

// a viewed as [outer, mid, inner]: out[m] = scale * sum_{o, s} a[o, m, s]; one workgroup per m
@compute @workgroup_size(256)
fn sum_outer_inner(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let m = group_id(wid, nwg);
    let count = p.outer * p.inner;
    // this thread's terms j = lid + 256 t as (o, s) = (j / inner, j % inner), found once and then
    // stepped by adding 256's digits (one carry), so the loop does no division
    let inner = max(p.inner, 1u);
    let step_o = 256u / inner;
    let step_s = 256u % inner;
    var o = lid / inner;
    var s = lid % inner;
    var acc = 0.0;
    for (var j = lid; j < count; j = j + 256u) {
        acc = acc + a[(o * p.mid + m) * inner + s];
        s = s + step_s;
        o = o + step_o;
        if (s >= inner) {
            s = s - inner;
            o = o + 1u;
        }
    }
    let total = workgroup_sum(acc, lid);
    if (lid == 0u && m < p.mid) { out[m] = p.scale * total; }
}

// sum_outer_inner for CPU adapters (the CPU kernel set): one invocation per m, no workgroup memory
// and no barriers, the same bits. Term j = (o, s) goes to partial j % 256, as thread j % 256 of
// sum_outer_inner takes it; the 256 partials, each summed in the same order, are then added by
// workgroup_sum's tree (at stride 128, 64, ..., 1, partial t adds partial t + stride). Where inner
// is a multiple of 4, partials t .. t + 3 (t a multiple of 4) take terms at the same o and at s ..
// s + 3 of one texel, and step alike: they are summed together, four lanes of one vector. The host
// keeps outer x inner within the software driver's loop limit.
@compute @workgroup_size(8)
fn sum_outer_inner_serial(@builtin(global_invocation_id) gid: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    let m = gid.x + gid.y * nwg.x * 8u;
    if (m >= p.mid) { return; }
    let count = p.outer * p.inner;
    // partial t: terms t, t + 256, ... as (o, s), stepped by adding 256's digits (one carry)
    let step_o = 256u / p.inner;
    let step_s = 256u % p.inner;
    // partial t is component t % 4 of partials[t / 4]
    var partials: array<vec4<f32>, 64>;
    let fours = p.inner % 4u == 0u;
    for (var t = 0u; t < 256u; t += select(1u, 4u, fours)) {
        var o = t / p.inner;
        var s = t % p.inner;
        var acc = vec4<f32>(0.0);
        for (var j = t; j < count; j = j + 256u) {
            let e = (o * p.mid + m) * p.inner + s;
            if (fours) {
                acc = acc + a4_at(e);
            } else {
                acc.x = acc.x + a_at(e);
            }
            s = s + step_s;
            o = o + step_o;
            if (s >= p.inner) {
                s = s - p.inner;
                o = o + 1u;
            }
        }
        if (fours) {
            partials[t >> 2u] = acc;
        } else {
            partials[t >> 2u][t & 3u] = acc.x;
        }
    }
    // the tree: strides 128 .. 4 add whole vectors, then 2 and 1 within the first
    for (var stride = 32u; stride > 0u; stride = stride / 2u) {
        for (var i = 0u; i < stride; i++) { partials[i] = partials[i] + partials[i + stride]; }
    }
    let halves = partials[0].xy + partials[0].zw;
    out[m] = p.scale * (halves.x + halves.y);
}

// out = scale * (a - b) * g[0]   (gradient of scale/2 * sum((a - b)^2) times the upstream scalar)
@compute @workgroup_size(256)
fn mse_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i < p.n) { out[i] = p.scale * (a[i] - b[i]) * g[0]; }
}
