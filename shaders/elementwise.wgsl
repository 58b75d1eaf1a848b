// Elementwise kernels: fill, copy, add, mul, scale, per-channel bias, ReLU / sigmoid / tanh and their
// backward, in-place accumulation, broadcasts used by reduction backwards, channel concatenation
// with its backward (a slice of channels), and bytes looked up in a table (u8 images to inputs).
// One thread per output element; the flat index spans a 2-D grid of 256-thread workgroups.
// With TEX (the CPU kernel set; the kernels that work by `units`), a thread takes one texel of four
// elements instead, and reads a and b from texture copies: the software driver loads a storage
// buffer element by element, lane by lane, but fetches texels with gathers. Both ways compute
// each element by the same operations, so they give the same bits.

override TEX: bool = false;

struct Params {
    n: u32,        // number of output elements
    inner: u32,    // elements per channel plane (bias) / inner extent (broadcast_axis)
    channels: u32, // channel count (bias) / reduced extent (broadcast_axis)
    _pad: u32,
    alpha: f32,
    beta: f32,
    total: u32,    // channels of the concatenation (concat_channels, channel_slice)
    offset: u32,   // first channel taken (channel_slice)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> bytes: array<u32>; // four bytes a word, little-endian
@group(0) @binding(5) var a_tex: texture_2d<f32>; // with TEX: a's copy
@group(0) @binding(6) var b_tex: texture_2d<f32>; // with TEX: b's copy

fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// The threads a kernel that works by units needs: a unit is a texel of four elements with TEX,
// else one element.
fn units(elements: u32) -> u32 {
    return select(elements, (elements + 3u) / 4u, TEX);
}

// The first element of unit q.
fn first_element(q: u32) -> u32 {
    return select(q, 4u * q, TEX);
}

// The unit of a that starts at element e (with TEX a multiple of 4: elements e .. e + 3; else
// element e in every component).
fn a_from(e: u32) -> vec4<f32> {
    if (TEX) { return texel(a_tex, e / 4u); }
    return vec4<f32>(a[e]);
}

// Unit q of a.
fn a4(q: u32) -> vec4<f32> {
    return a_from(first_element(q));
}

// Unit q of b.
fn b4(q: u32) -> vec4<f32> {
    if (TEX) { return texel(b_tex, q); }
    return vec4<f32>(b[q]);
}

// Unit q of out, as it is.
fn out4(q: u32) -> vec4<f32> {
    if (TEX) {
        var v = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c++) {
            if (4u * q + c < p.n) { v[c] = out[4u * q + c]; }
        }
        return v;
    }
    return vec4<f32>(out[q]);
}

// Writes the values v of unit q from element e of out on: with TEX element e + c is v[c] where
// 4q + c < p.n, else element e is v.x.
fn put(e: u32, q: u32, v: vec4<f32>) {
    if (TEX) {
        for (var c = 0u; c < 4u; c++) {
            if (4u * q + c < p.n) { out[e + c] = v[c]; }
        }
    } else {
        out[e] = v.x;
    }
}

// Writes unit q of out.
fn put4(q: u32, v: vec4<f32>) {
    put(first_element(q), q, v);
}

// out = a[byte i of bytes]: a 256-entry table indexed by each byte
@compute @workgroup_size(256)
fn lookup_bytes(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = a[(bytes[i / 4u] >> (8u * (i % 4u))) & 255u]; }
}

// out = alpha
@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = p.alpha; }
}

// out = a
@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_id(gid, nwg);
    if (q < units(p.n)) { put4(q, a4(q)); }
}

// out = alpha * a + beta * b
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_id(gid, nwg);
    if (q < units(p.n)) { put4(q, p.alpha * a4(q) + p.beta * b4(q)); }
}

// out = alpha * a * b
@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_id(gid, nwg);
    if (q < units(p.n)) { put4(q, p.alpha * a4(q) * b4(q)); }
}

// out = alpha * a + beta
@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_id(gid, nwg);
    if (q < units(p.n)) { put4(q, p.alpha * a4(q) + p.beta); }
}

// out += alpha * a (in place; gradient accumulation)
@compute @workgroup_size(256)
fn accumulate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_id(gid, nwg);
    if (q < units(p.n)) { put4(q, out4(q) + p.alpha * a4(q)); }
}

// out[n, c, s] = a[n, c, s] + b[c]   (NCHW with s over the `inner` spatial elements)
@compute @workgroup_size(256)
fn add_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = a[i] + b[(i / p.inner) % p.channels]; }
}

@compute @workgroup_size(256)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_id(gid, nwg);
    if (q < units(p.n)) { put4(q, max(a4(q), vec4<f32>(0.0))); }
}

// a = forward output y, b = output gradient
@compute @workgroup_size(256)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_id(gid, nwg);
    if (q < units(p.n)) { put4(q, select(vec4<f32>(0.0), b4(q), a4(q) > vec4<f32>(0.0))); }
}

fn sigmoid_f(x: vec4<f32>) -> vec4<f32> {
    // exp of a non-positive number never overflows
    let e = exp(-abs(x));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= vec4<f32>(0.0));
}

@compute @workgroup_size(256)
fn sigmoid(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_id(gid, nwg);
    if (q < units(p.n)) { put4(q, sigmoid_f(a4(q))); }
}

// a = forward output y, b = output gradient
@compute @workgroup_size(256)
fn sigmoid_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_id(gid, nwg);
    if (q < units(p.n)) {
        let y = a4(q);
        put4(q, b4(q) * y * (1.0 - y));
    }
}

@compute @workgroup_size(256)
fn tanh_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_id(gid, nwg);
    // tanh(x) = 2 sigmoid(2x) - 1, stable for every x on every backend
    if (q < units(p.n)) { put4(q, 2.0 * sigmoid_f(2.0 * a4(q)) - 1.0); }
}

// a = forward output y, b = output gradient
@compute @workgroup_size(256)
fn tanh_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_id(gid, nwg);
    if (q < units(p.n)) {
        let y = a4(q);
        put4(q, b4(q) * (1.0 - y * y));
    }
}

// out[i] = alpha * a[0]   (backward of a full sum / mean)
@compute @workgroup_size(256)
fn broadcast_scalar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = p.alpha * a[0]; }
}

// out[o, m, s] = alpha * a[o, s], m < channels, s < inner   (backward of a sum over one axis)
@compute @workgroup_size(256)
fn broadcast_axis(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) {
        let s = i % p.inner;
        let o = i / (p.inner * p.channels);
        out[i] = p.alpha * a[o * p.inner + s];
    }
}

// Gated activation over channel halves: a = x [n, 2C, s], out[n, c, s] = tanh(x[n, c, s]) * sigmoid(x[n, C + c, s])
// with `channels` = C, `inner` = s extent, `n` = output elements (with TEX, C * s is a multiple
// of 4, so that a unit's four elements lie side by side in both halves).
fn gate_index(i: u32) -> u32 {
    let plane = p.channels * p.inner;
    return (i / plane) * 2u * plane + i % plane;
}

@compute @workgroup_size(256)
fn gate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_id(gid, nwg);
    if (q < units(p.n)) {
        let j = gate_index(first_element(q));
        let t = 2.0 * sigmoid_f(2.0 * a_from(j)) - 1.0;
        put4(q, t * sigmoid_f(a_from(j + p.channels * p.inner)));
    }
}

// a = gate input x [n, 2C, s], b = output gradient [n, C, s]; out = input gradient [n, 2C, s]
@compute @workgroup_size(256)
fn gate_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_id(gid, nwg);
    if (q < units(p.n)) {
        let j = gate_index(first_element(q));
        let k = j + p.channels * p.inner;
        let t = 2.0 * sigmoid_f(2.0 * a_from(j)) - 1.0;
        let s = sigmoid_f(a_from(k));
        let g = b4(q);
        put(j, q, g * (1.0 - t * t) * s);
        put(k, q, g * t * s * (1.0 - s));
    }
}

// out [N, total, S] = a [N, channels, S] followed by b [N, total - channels, S] along channels
@compute @workgroup_size(256)
fn concat_channels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= p.n) { return; }
    let s = i % p.inner;
    let c = (i / p.inner) % p.total;
    let n = i / (p.inner * p.total);
    if (c < p.channels) {
        out[i] = a[(n * p.channels + c) * p.inner + s];
    } else {
        let rest = p.total - p.channels;
        out[i] = b[(n * rest + c - p.channels) * p.inner + s];
    }
}

// out [N, channels, S] = a [N, total, S] at channels offset .. offset + channels (with TEX, S is a
// multiple of 4)
@compute @workgroup_size(256)
fn channel_slice(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_id(gid, nwg);
    if (q >= units(p.n)) { return; }
    let i = first_element(q);
    let s = i % p.inner;
    let c = (i / p.inner) % p.channels;
    let n = i / (p.inner * p.channels);
    put4(q, a_from((n * p.total + p.offset + c) * p.inner + s));
}
