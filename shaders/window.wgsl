// Windows of NCHW feature maps, for evaluating a causal convolutional network a few positions at a
// time: a stride-1 (optionally masked) convolution computed only at the output positions of a window,
// and copies of a window out of and into a full map. A window is rows [row0, row0 + rows) x columns
// [col0, col0 + cols) of a map of height x width. One thread per output element; every sum runs over
// the input channels, then the kernel rows, then the kernel columns, in order.

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
    k_chunk: u32, // conv: terms per chunk of the sum (the K split of conv.wgsl for the full map)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;       // conv, read_window: the full map; write_window: the window
@group(0) @binding(2) var<storage, read> weight: array<f32>;  // conv: [cout, cin, k_h, k_w]
@group(0) @binding(3) var<storage, read> bias: array<f32>;    // conv: [cout]
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // conv, read_window: the window; write_window: the full map

override HAS_BIAS: bool = false;

fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

fn keeps(tap: u32) -> bool {
    if (tap < 32u) { return ((p.mask_lo >> tap) & 1u) == 1u; }
    return ((p.mask_hi >> (tap - 32u)) & 1u) == 1u;
}

// out[b, o, i, j] = sum over (ci, ky, kx) kept of
//   weight[o, ci, ky, kx] * x[b, ci, row0 + i + ky - pad_h, col0 + j + kx - pad_w] (zero outside the map),
// plus bias[o]. The sum runs as conv.wgsl's forward does for the full map: term k = ci * taps + tap in
// order, in chunks of k_chunk terms each summed from zero, the bias added to the first chunk, and the
// chunks added in order; so on one adapter the result equals conv2d's bit for bit.
// Masked-out positions are never read, so they may hold anything (positions not yet computed).
@compute @workgroup_size(256)
fn conv_window(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat_id(gid, nwg);
    let per_map = p.rows * p.cols;
    if (n >= p.batch * p.cout * per_map) { return; }
    let j = n % p.cols;
    let i = (n / p.cols) % p.rows;
    let o = (n / per_map) % p.cout;
    let b = n / (per_map * p.cout);
    let y0 = i32(p.row0 + i) - i32(p.pad_h);
    let x0 = i32(p.col0 + j) - i32(p.pad_w);
    let taps = p.k_h * p.k_w;
    var total = 0.0;
    var acc = 0.0;
    var chunk = 0u;
    for (var ci = 0u; ci < p.cin; ci = ci + 1u) {
        let plane = (b * p.cin + ci) * p.height;
        let w_base = (o * p.cin + ci) * taps;
        for (var tap = 0u; tap < taps; tap = tap + 1u) {
            let k_chunk_of = (ci * taps + tap) / p.k_chunk;
            if (k_chunk_of != chunk) {
                if (HAS_BIAS && chunk == 0u) { acc = acc + bias[o]; }
                total = total + acc;
                acc = 0.0;
                chunk = k_chunk_of;
            }
            let y = y0 + i32(tap / p.k_w);
            let xx = x0 + i32(tap % p.k_w);
            if (y < 0 || y >= i32(p.height) || xx < 0 || xx >= i32(p.width) || !keeps(tap)) { continue; }
            acc = acc + weight[w_base + tap] * x[(plane + u32(y)) * p.width + u32(xx)];
        }
    }
    if (HAS_BIAS && chunk == 0u) { acc = acc + bias[o]; }
    out[n] = total + acc;
}

// The element n of a [batch, cin, rows, cols] window and its index in the full [batch, cin, height, width] map.
fn full_index(n: u32) -> u32 {
    let j = n % p.cols;
    let i = (n / p.cols) % p.rows;
    let plane = n / (p.rows * p.cols);
    return (plane * p.height + p.row0 + i) * p.width + p.col0 + j;
}

// out (the window) = x (the full map) at the window.
@compute @workgroup_size(256)
fn read_window(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat_id(gid, nwg);
    if (n >= p.batch * p.cin * p.rows * p.cols) { return; }
    out[n] = x[full_index(n)];
}

// out (the full map) at the window = x (the window); the rest of the map is left as it is.
@compute @workgroup_size(256)
fn write_window(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat_id(gid, nwg);
    if (n >= p.batch * p.cin * p.rows * p.cols) { return; }
    out[full_index(n)] = x[n];
}
