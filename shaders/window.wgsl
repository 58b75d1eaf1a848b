// Windows of NCHW feature maps, for evaluating a causal convolutional network a few positions at a
// time: a stride-1 (optionally masked) convolution computed only at the output positions of a
// window, and copies of a window out of and into a full map (with a second operand added or not).
// A window is rows [row0, row0 + rows) x columns [col0, col0 + cols) of a map of height x width;
// a window of one position may be laid out side by side (SIDE): [1, C, 1, batch]. One thread per
// output element; every sum runs over the input channels, then the kernel rows, then the kernel
// columns, in order.

struct Params {
    batch: u32,
    cin: u32,     // conv: input channels; copies: channels
    cout: u32,    // conv: output channels
    height: u32,  // the full map (conv: the input; read_window: the source; write_window: the target)
    width: u32,
    row0: u32,    // the window (conv: in output coordinates, which equal the input's for 'same' padding)
    col0: u32,
    rows: u32,
    cols: u32,
    k_h: u32,     // conv: kernel size
    k_w: u32,
    pad_h: u32,   // conv: zero padding on each side
    pad_w: u32,
    mask_lo: u32, // conv: kernel positions ky * k_w + kx < 32 kept where their bit is set
    mask_hi: u32, // positions 32..63
    k_chunk: u32, // conv: terms per chunk of the sum (the K split of conv2d for the full map)
    chunk_taps: u32, // conv: kernel positions per input channel as conv2d numbers its sum's terms
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;       // conv, read_window: the full map; write_window: the window
// conv: [cin * k_h * k_w, cout4]; transpose_weight: OIHW; the copies with ADD: the addend
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;    // conv: [cout]
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // conv, read_window: the window; write_window: the full map

override HAS_BIAS: bool = false;
override ADD: bool = false; // read_window, write_window: add a second operand (bound at weight)
// A window of one position laid out side by side: [1, C, 1, batch], each channel's values of
// the batch's maps in a row, instead of [batch, C, 1, 1] (conv_window: the output; the copies:
// the window)
override SIDE: bool = false;

fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

fn keeps(tap: u32) -> bool {
    if (tap < 32u) { return ((p.mask_lo >> tap) & 1u) == 1u; }
    return ((p.mask_hi >> (tap - 32u)) & 1u) == 1u;
}

// out[b, o, i, j] = sum over (ci, ky, kx) kept of
//   weight[o, ci, ky, kx] * x[b, ci, row0 + i + ky - pad_h, col0 + j + kx - pad_w] (zero outside the map),
// plus bias[o]. The sum runs as conv2d's forward does for the full map: term k = ci * chunk_taps + tap
// in order, in chunks of k_chunk terms each summed from zero, the bias added to the first chunk, and
// the chunks added in order; so on one adapter the result equals conv2d's bit for bit. (conv2d counts
// chunk_taps = k_h * k_w positions per channel, or on conv.wgsl the window its mask keeps.)
// Masked-out positions are never read, so they may hold anything (positions not yet computed).
// One thread computes 4 output channels of one position (one input load feeds 4 sums), from the
// weight as transpose_weight lays it out. The kernel
// positions that are kept and inside the map are listed once per thread, so that the loop over
// channels does no division and no bounds check (divisions are slow on CPU drivers).
@compute @workgroup_size(256)
fn conv_window(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat_id(gid, nwg);
    let per_map = p.rows * p.cols;
    let quads = (p.cout + 3u) / 4u;
    if (n >= p.batch * quads * per_map) { return; }
    let j = n % p.cols;
    let i = (n / p.cols) % p.rows;
    let o = ((n / per_map) % quads) * 4u;
    let b = n / (per_map * quads);
    let y0 = i32(p.row0 + i) - i32(p.pad_h);
    let x0 = i32(p.col0 + j) - i32(p.pad_w);
    let taps = p.k_h * p.k_w;
    var tap_of: array<u32, 64>;    // kept kernel positions inside the map, in order
    var offset_of: array<u32, 64>; // ... and their input offset within a channel plane
    var count = 0u;
    for (var ky = 0u; ky < p.k_h; ky = ky + 1u) {
        let y = y0 + i32(ky);
        if (y < 0 || y >= i32(p.height)) { continue; }
        for (var kx = 0u; kx < p.k_w; kx = kx + 1u) {
            let xx = x0 + i32(kx);
            let tap = ky * p.k_w + kx;
            if (xx < 0 || xx >= i32(p.width) || !keeps(tap)) { continue; }
            tap_of[count] = tap;
            offset_of[count] = u32(y) * p.width + u32(xx);
            count = count + 1u;
        }
    }
    let cout4 = quads * 4u;
    let plane_size = p.height * p.width;
    var total = vec4<f32>(0.0);
    var acc = vec4<f32>(0.0);
    var first_chunk = true;
    var chunk_end = p.k_chunk;
    for (var ci = 0u; ci < p.cin; ci = ci + 1u) {
        let plane = (b * p.cin + ci) * plane_size;
        for (var t = 0u; t < count; t = t + 1u) {
            let k = ci * taps + tap_of[t];
            let term = ci * p.chunk_taps + tap_of[t];
            if (term >= chunk_end) {
                // a new chunk of the sum: close the one before (chunks with no term add nothing)
                if (HAS_BIAS && first_chunk) { acc = acc + bias_of(o); }
                total = total + acc;
                acc = vec4<f32>(0.0);
                first_chunk = false;
                chunk_end = (term / p.k_chunk + 1u) * p.k_chunk;
            }
            let w = k * cout4 + o;
            let wv = vec4<f32>(weight[w], weight[w + 1u], weight[w + 2u], weight[w + 3u]);
            acc = acc + wv * x[plane + offset_of[t]];
        }
    }
    if (HAS_BIAS && first_chunk) { acc = acc + bias_of(o); }
    let v = total + acc;
    var base = ((b * p.cout + o) * p.rows + i) * p.cols + j;
    var step = per_map;
    if (SIDE) {
        base = o * p.batch + b;
        step = p.batch;
    }
    out[base] = v.x;
    if (o + 1u < p.cout) { out[base + step] = v.y; }
    if (o + 2u < p.cout) { out[base + 2u * step] = v.z; }
    if (o + 3u < p.cout) { out[base + 3u * step] = v.w; }
}

// bias[o..o + 4] (a channel past cout takes the last one's: it is not stored)
fn bias_of(o: u32) -> vec4<f32> {
    let last = p.cout - 1u;
    return vec4<f32>(bias[o], bias[min(o + 1u, last)], bias[min(o + 2u, last)], bias[min(o + 3u, last)]);
}

// out [cin * k_h * k_w, cout4] = the OIHW weight [cout, cin * k_h * k_w] transposed, with zero columns
// up to cout4 = cout rounded up to 4: the layout conv_window reads, where the threads of neighbouring
// output channels read neighbouring weights.
@compute @workgroup_size(256)
fn transpose_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat_id(gid, nwg);
    let cout4 = (p.cout + 3u) / 4u * 4u;
    let per_out = p.cin * p.k_h * p.k_w;
    if (n >= per_out * cout4) { return; }
    let o = n % cout4;
    let k = n / cout4;
    var v = 0.0;
    if (o < p.cout) { v = weight[o * per_out + k]; }
    out[n] = v;
}

// The element n of a [batch, cin, rows, cols] window (with SIDE a position's [1, cin, 1, batch])
// and its index in the full [batch, cin, height, width] map.
fn full_index(n: u32) -> u32 {
    if (SIDE) {
        let image = n % p.batch;
        let channel = n / p.batch;
        return ((image * p.cin + channel) * p.height + p.row0) * p.width + p.col0;
    }
    let j = n % p.cols;
    let i = (n / p.cols) % p.rows;
    let plane = n / (p.rows * p.cols);
    return (plane * p.height + p.row0 + i) * p.width + p.col0 + j;
}

// out (the window) = x (the full map) at the window; with ADD plus `weight`, a tensor of the
// window's dims.
@compute @workgroup_size(256)
fn read_window(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat_id(gid, nwg);
    if (n >= p.batch * p.cin * p.rows * p.cols) { return; }
    var v = x[full_index(n)];
    if (ADD) { v = v + weight[n]; }
    out[n] = v;
}

// out (the full map) at the window = x (the window); with ADD plus `weight`, another map of the
// same dims, at the window. The rest of the map is left as it is.
@compute @workgroup_size(256)
fn write_window(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat_id(gid, nwg);
    if (n >= p.batch * p.cin * p.rows * p.cols) { return; }
    let f = full_index(n);
    var v = x[n];
    if (ADD) { v = v + weight[f]; }
    out[f] = v;
}
