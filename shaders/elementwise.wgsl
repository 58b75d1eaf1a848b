// Elementwise kernels: fill, copy, add, mul, scale, per-channel bias, ReLU / sigmoid / tanh and their
// backward, in-place accumulation, broadcasts used by reduction backwards, channel concatenation
// with its backward (a slice of channels), and bytes looked up in a table (u8 images to inputs).
// One thread per output element; the flat index spans a 2-D grid of 256-thread workgroups.

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

fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
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
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = a[i]; }
}

// out = alpha * a + beta * b
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = p.alpha * a[i] + p.beta * b[i]; }
}

// out = alpha * a * b
@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = p.alpha * a[i] * b[i]; }
}

// out = alpha * a + beta
@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = p.alpha * a[i] + p.beta; }
}

// out += alpha * a (in place; gradient accumulation)
@compute @workgroup_size(256)
fn accumulate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = out[i] + p.alpha * a[i]; }
}

// out[n, c, s] = a[n, c, s] + b[c]   (NCHW with s over the `inner` spatial elements)
@compute @workgroup_size(256)
fn add_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = a[i] + b[(i / p.inner) % p.channels]; }
}

@compute @workgroup_size(256)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = max(a[i], 0.0); }
}

// a = forward output y, b = output gradient
@compute @workgroup_size(256)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = select(0.0, b[i], a[i] > 0.0); }
}

fn sigmoid_f(x: f32) -> f32 {
    // exp of a non-positive number never overflows
    let e = exp(-abs(x));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}

@compute @workgroup_size(256)
fn sigmoid(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = sigmoid_f(a[i]); }
}

// a = forward output y, b = output gradient
@compute @workgroup_size(256)
fn sigmoid_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = b[i] * a[i] * (1.0 - a[i]); }
}

@compute @workgroup_size(256)
fn tanh_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    // tanh(x) = 2 sigmoid(2x) - 1, stable for every x on every backend
    if (i < p.n) { out[i] = 2.0 * sigmoid_f(2.0 * a[i]) - 1.0; }
}

// a = forward output y, b = output gradient
@compute @workgroup_size(256)
fn tanh_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = b[i] * (1.0 - a[i] * a[i]); }
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
// with `channels` = C, `inner` = s extent, `n` = output elements.
fn gate_index(i: u32) -> u32 {
    let plane = p.channels * p.inner;
    return (i / plane) * 2u * plane + i % plane;
}

@compute @workgroup_size(256)
fn gate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) {
        let j = gate_index(i);
        let t = 2.0 * sigmoid_f(2.0 * a[j]) - 1.0;
        out[i] = t * sigmoid_f(a[j + p.channels * p.inner]);
    }
}

// a = gate input x [n, 2C, s], b = output gradient [n, C, s]; out = input gradient [n, 2C, s]
@compute @workgroup_size(256)
fn gate_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) {
        let j = gate_index(i);
        let k = j + p.channels * p.inner;
        let t = 2.0 * sigmoid_f(2.0 * a[j]) - 1.0;
        let s = sigmoid_f(a[k]);
        out[j] = b[i] * (1.0 - t * t) * s;
        out[k] = b[i] * t * s * (1.0 - s);
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

// out [N, channels, S] = a [N, total, S] at channels offset .. offset + channels
@compute @workgroup_size(256)
fn channel_slice(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= p.n) { return; }
    let s = i % p.inner;
    let c = (i / p.inner) % p.channels;
    let n = i / (p.inner * p.channels);
    out[i] = a[(n * p.total + p.offset + c) * p.inner + s];
}
