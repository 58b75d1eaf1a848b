// 2-D convolution as an implicit GEMM, NCHW activations and OIHW weights, with stride, zero padding
// and an optional spatial mask over the kernel window (masked convolutions).
// One tiled core serves three products, chosen by the MODE override:
//   MODE 0  forward:          y[b, co, oy, ox]  = sum_{ci, ky, kx} w[co, ci, ky, kx] x[b, ci, oy*s+ky-p, ox*s+kx-p] (+ bias[co])
//           GEMM  M = cout, N = batch*out_h*out_w, K = cin*k_h*k_w, optionally split along K into
//           `z_groups` chunks written to separate copies of y (summed afterwards in a fixed order;
//           the bias goes into the first).
//   MODE 1  input gradient:   dx[b, ci, iy, ix] = sum_{co, ky, kx} w[co, ci, ky, kx] dy[b, co, (iy+p-ky)/s, (ix+p-kx)/s] (+ bias[ci])
//           This is also the forward pass of the transposed convolution (its IOHW weight = this OIHW).
//           Only taps with (iy + p - ky) divisible by s contribute, so the output is split into s_h*s_w
//           phases (iy + p) mod s, one per workgroup z: within a phase the taps are ky = phase + s*t.
//           GEMM per phase  M = cin, N = batch * (pixels of the phase), K = cout * ceil(k_h/s_h) * ceil(k_w/s_w),
//           optionally split along K like the forward (workgroup z = phase + phases * chunk)
//   MODE 2  weight gradient:  dw[co, ci, ky, kx] = sum_{b, oy, ox} dy[b, co, oy, ox] x[b, ci, oy*s+ky-p, ox*s+kx-p]
//           GEMM  M = cout, N = cin*k_h*k_w, K = batch*out_h*out_w, optionally split along K into
//           `z_groups` chunks written to separate slices of `out` (summed afterwards in a fixed order).
// Names follow the convolution: x has `cin` channels and size in_h x in_w, y has `cout` channels and
// size out_h x out_w. The products run over the kernel window win_h x win_w, the leading part of the
// k_h x k_w kernel that a mask keeps when it drops whole trailing rows (or, in a one-row kernel,
// trailing columns): K and N above count the window's taps, not the kernel's. Every tap of the
// window has the same index ky * k_w + kx in the kernel as in the window, so the weight is read in
// place. A weight gradient over a smaller window writes only the window's taps (the host provides
// zeros for the others); split along K, its partial results hold the window's taps only.
// A 256-thread workgroup computes a (16*ROWS) x (16*COLS) output tile, each thread a ROWS x COLS
// register block, with K in slices of TILE_K staged through workgroup memory.

override MODE: u32 = 0u;
override HAS_BIAS: bool = false;
override MASKED: bool = false;
override RESIDUAL: bool = false; // the output is residual + result, before the ReLU (not split along K)
// the output is kept where gate > 0, else 0, last (not split along K): the gradient through the
// ReLU whose output is `gate`
override GATED: bool = false;
// tile shapes used by the host: (4, 4, 16) = 64x64, (2, 8, 16) = 32x128, (1, 16, 8) = 16x256
override ROWS: u32 = 4u;
override COLS: u32 = 4u;
override TILE_K: u32 = 16u;

struct Params {
    batch: u32,
    cin: u32,
    cout: u32,
    z_groups: u32, // workgroups along z per row of N tiles: phases x K chunks
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    k_h: u32,
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    mask_lo: u32, // kernel positions ky * k_w + kx < 32 kept where their bit is set
    mask_hi: u32, // positions 32..63
    k_chunk: u32, // K elements per chunk
    phases: u32,  // stride phases (MODE 1); 1 otherwise
    relu: u32,    // 1: the output is max(result, 0) (a product not split along K only)
    win_h: u32,   // the kernel window the products run over (k_h x k_w where no mask shrinks it)
    win_w: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> lhs: array<f32>;  // MODE 0, 1: weight; MODE 2: dy
@group(0) @binding(2) var<storage, read> rhs: array<f32>;  // MODE 0, 2: x; MODE 1: dy
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>; // laid out as `out`
@group(0) @binding(6) var<storage, read> gate: array<f32>;     // laid out as `out`

// [TILE_K][16 * ROWS + 4], as fours of rows: the 4 extra floats per k spread a thread's K column
// (neighbouring threads store neighbouring k of one row) over the memory banks
var<workgroup> l_tile: array<vec4<f32>, 272>;
var<workgroup> r_tile: array<vec4<f32>, 512>; // [TILE_K][16 * COLS], as fours of columns

// One output phase of MODE 1: pixels iy = y0 + s_h * j (j < rows), taps ky = ry + s_h * t (t < taps_y),
// and dy row oy = qy + j - t; the same along x.
struct Phase {
    ry: u32, rx: u32,
    y0: u32, x0: u32,
    rows: u32, cols: u32,
    qy: u32, qx: u32,
    taps_y: u32, taps_x: u32,
}

var<private> ph: Phase;

fn make_phase(index: u32) -> Phase {
    var f: Phase;
    f.ry = index / p.stride_w;
    f.rx = index % p.stride_w;
    f.y0 = (f.ry + p.stride_h - p.pad_h % p.stride_h) % p.stride_h;
    f.x0 = (f.rx + p.stride_w - p.pad_w % p.stride_w) % p.stride_w;
    f.rows = select(0u, (p.in_h - f.y0 + p.stride_h - 1u) / p.stride_h, p.in_h > f.y0);
    f.cols = select(0u, (p.in_w - f.x0 + p.stride_w - 1u) / p.stride_w, p.in_w > f.x0);
    f.qy = (f.y0 + p.pad_h) / p.stride_h;
    f.qx = (f.x0 + p.pad_w) / p.stride_w;
    f.taps_y = (p.win_h + p.stride_h - 1u) / p.stride_h;
    f.taps_x = (p.win_w + p.stride_w - 1u) / p.stride_w;
    return f;
}

fn gemm_m() -> u32 {
    if (MODE == 1u) { return p.cin; }
    return p.cout;
}

fn gemm_n() -> u32 {
    if (MODE == 0u) { return p.batch * p.out_h * p.out_w; }
    if (MODE == 1u) { return p.batch * ph.rows * ph.cols; }
    return p.cin * p.win_h * p.win_w;
}

fn gemm_k() -> u32 {
    if (MODE == 0u) { return p.cin * p.win_h * p.win_w; }
    if (MODE == 1u) {
        // the same for every phase (taps beyond the kernel load zeros): keeps loop bounds uniform
        return p.cout * ((p.win_h + p.stride_h - 1u) / p.stride_h) * ((p.win_w + p.stride_w - 1u) / p.stride_w);
    }
    return p.batch * p.out_h * p.out_w;
}

fn mask_weight(tap: u32) -> f32 {
    if (!MASKED) { return 1.0; }
    var bits = p.mask_lo;
    var bit = tap;
    if (tap >= 32u) { bits = p.mask_hi; bit = tap - 32u; }
    return f32((bits >> bit) & 1u);
}

// A position k along K as mixed-radix digits (lo, mid, hi) under the mode's radices (lo, mid):
//   MODE 0: (kx, ky, ci) under (win_w, win_h); MODE 1: (tx, ty, co) under (taps_x, taps_y);
//   MODE 2: (ox, oy, b) under (out_w, out_h).
// A thread divides once to find its first position and then only steps it by adding digits, so
// the loads in the K loop have no integer division.
var<private> radix: vec2<u32>;

fn k_radix() -> vec2<u32> {
    if (MODE == 0u) { return vec2<u32>(p.win_w, p.win_h); }
    if (MODE == 1u) { return vec2<u32>(ph.taps_x, ph.taps_y); }
    return vec2<u32>(p.out_w, p.out_h);
}

fn k_digits(k: u32) -> vec3<u32> {
    let q = k / radix.x;
    return vec3<u32>(k % radix.x, q % radix.y, q / radix.y);
}

// The digits of k + the number whose digits are `step` (each digit below its radix): one carry per
// digit is enough, since lo + step.lo < 2 lo radix and mid + step.mid + 1 < 2 mid radix.
fn k_advance(at: vec3<u32>, step: vec3<u32>) -> vec3<u32> {
    var r = at + step;
    if (r.x >= radix.x) { r.x = r.x - radix.x; r.y = r.y + 1u; }
    if (r.y >= radix.y) { r.y = r.y - radix.y; r.z = r.z + 1u; }
    return r;
}

// What a column n of the right operand fixes, found once per thread:
//   MODE 0: image offset of batch b, and the input row/column of the window's corner (oy*s - p, ox*s - p);
//   MODE 1: dy offset of batch b, and the dy row/column of tap (0, 0) (qy + phase row, qx + phase column);
//   MODE 2: image offset of channel ci, the kernel tap's row/column less the padding, and its mask.
struct Column {
    base: u32,
    y: i32,
    x: i32,
    weight: f32,
    inside: bool,
}

fn column(n: u32) -> Column {
    var c: Column;
    c.inside = n < gemm_n();
    c.weight = 1.0;
    // a column inside the product implies non-zero sizes, so the divisions below are by non-zero values
    if (!c.inside) { return c; }
    if (MODE == 0u) {
        let plane = p.out_h * p.out_w;
        let pix = n % plane;
        c.base = (n / plane) * p.cin * p.in_h * p.in_w;
        c.y = i32((pix / p.out_w) * p.stride_h) - i32(p.pad_h);
        c.x = i32((pix % p.out_w) * p.stride_w) - i32(p.pad_w);
    } else if (MODE == 1u) {
        let plane = ph.rows * ph.cols;
        let pix = n % plane;
        c.base = (n / plane) * p.cout * p.out_h * p.out_w;
        c.y = i32(ph.qy + pix / ph.cols);
        c.x = i32(ph.qx + pix % ph.cols);
    } else {
        let taps = p.win_h * p.win_w;
        let tap = n % taps;
        c.base = (n / taps) * p.in_h * p.in_w;
        c.y = i32(tap / p.win_w) - i32(p.pad_h);
        c.x = i32(tap % p.win_w) - i32(p.pad_w);
        c.weight = mask_weight(tap);
    }
    return c;
}

// The left operand at row m and the K position with digits `at`
fn load_lhs(m: u32, at: vec3<u32>) -> f32 {
    if (MODE == 0u) {
        let tap = at.y * p.k_w + at.x;
        return lhs[(m * p.cin + at.z) * p.k_h * p.k_w + tap] * mask_weight(tap);
    }
    if (MODE == 1u) {
        let ky = ph.ry + p.stride_h * at.y;
        let kx = ph.rx + p.stride_w * at.x;
        if (ky >= p.win_h || kx >= p.win_w) { return 0.0; }
        let tap = ky * p.k_w + kx;
        return lhs[(at.z * p.cin + m) * p.k_h * p.k_w + tap] * mask_weight(tap);
    }
    return lhs[((at.z * p.cout + m) * p.out_h + at.y) * p.out_w + at.x];
}

// The right operand at column `col` and the K position with digits `at`; zero outside the image
fn load_rhs(col: Column, at: vec3<u32>) -> f32 {
    if (MODE == 0u) {
        let iy = col.y + i32(at.y);
        let ix = col.x + i32(at.x);
        if (iy < 0 || ix < 0 || iy >= i32(p.in_h) || ix >= i32(p.in_w)) { return 0.0; }
        return rhs[col.base + (at.z * p.in_h + u32(iy)) * p.in_w + u32(ix)];
    }
    if (MODE == 1u) {
        let oy = col.y - i32(at.y);
        let ox = col.x - i32(at.x);
        if (oy < 0 || ox < 0 || oy >= i32(p.out_h) || ox >= i32(p.out_w)) { return 0.0; }
        return rhs[col.base + (at.z * p.out_h + u32(oy)) * p.out_w + u32(ox)];
    }
    let iy = i32(at.y * p.stride_h) + col.y;
    let ix = i32(at.x * p.stride_w) + col.x;
    if (iy < 0 || ix < 0 || iy >= i32(p.in_h) || ix >= i32(p.in_w)) { return 0.0; }
    return rhs[at.z * p.cin * p.in_h * p.in_w + col.base + u32(iy) * p.in_w + u32(ix)] * col.weight;
}

// Where output (m, n) of K chunk `chunk` goes: out_start(chunk) + out_column(n) + m * out_row_stride(),
// so that a thread decomposes each of its columns once for all its rows.
fn out_start(chunk: u32) -> u32 {
    if (MODE == 0u) { return chunk * (p.batch * p.cout * p.out_h * p.out_w); }
    if (MODE == 1u) { return chunk * (p.batch * p.cin * p.in_h * p.in_w); }
    return chunk * gemm_m() * gemm_n();
}

// Whether a weight gradient is stored in the weight's layout (not split along K): column n, tap
// n % (win_h * win_w) of input channel n / (win_h * win_w), goes to that tap of the kernel.
fn in_weight_layout() -> bool {
    return MODE == 2u && p.z_groups == 1u;
}

fn out_row_stride() -> u32 {
    if (MODE == 0u) { return p.out_h * p.out_w; }
    if (MODE == 1u) { return p.in_h * p.in_w; }
    if (in_weight_layout()) { return p.cin * p.k_h * p.k_w; }
    return gemm_n();
}

// (only for columns inside the product)
fn out_column(n: u32) -> u32 {
    if (MODE == 0u) {
        let plane = p.out_h * p.out_w;
        return (n / plane) * p.cout * plane + n % plane;
    }
    if (MODE == 1u) {
        let plane = ph.rows * ph.cols;
        let pix = n % plane;
        let iy = ph.y0 + p.stride_h * (pix / ph.cols);
        let ix = ph.x0 + p.stride_w * (pix % ph.cols);
        return (n / plane) * p.cin * p.in_h * p.in_w + iy * p.in_w + ix;
    }
    if (in_weight_layout()) {
        let taps = p.win_h * p.win_w;
        return (n / taps) * p.k_h * p.k_w + n % taps;
    }
    return n;
}

// Stores the sum of an output in row m of K chunk `chunk` at `index`, with the epilogue: the bias
// (first chunk only), the residual, the ReLU, the gate.
fn store_output(m: u32, index: u32, chunk: u32, sum: f32) {
    var v = sum;
    if (HAS_BIAS && chunk == 0u) { v = v + bias[m]; }
    if (RESIDUAL) { v = residual[index] + v; }
    if (p.relu == 1u) { v = max(v, 0.0); }
    if (GATED) { v = select(0.0, v, gate[index] > 0.0); }
    out[index] = v;
}

// The tile row of a thread's i-th output row: four adjacent rows (one vec4 of the left tile) with
// 64-row tiles, else rows 16 apart
var<private> thread_y: u32;

fn row_of(i: u32) -> u32 {
    if (ROWS == 4u) { return 4u * thread_y + i; }
    return thread_y + 16u * i;
}

// What one thread loads into the tiles: K column t % TILE_K of every (256 / TILE_K)-th row of the
// left tile, and column t % tile_n of every (256 / tile_n)-th K row of the right tile, with the
// digits of its next K positions. Set up once per thread.
struct Loader {
    t: u32,
    m0: u32,
    size_m: u32,
    k_end: u32,
    kl: u32,
    nn: u32,
    k_step: vec3<u32>,
    rhs_row_step: vec3<u32>,
    lhs_at: vec3<u32>,
    rhs_at: vec3<u32>,
    col: Column,
}

var<private> ld: Loader;
// The thread's part of the next K slice, loaded while the current one is multiplied: at most
// TILE_K * 16 * ROWS / 256 = 4 left and TILE_K * 16 * COLS / 256 = 8 right values.
var<private> lhs_next: array<f32, 4>;
var<private> rhs_next: array<f32, 8>;

// Loads the thread's part of the K slice [k0, k0 + TILE_K) into registers (zeros outside the
// operands) and steps its positions on to the next slice.
fn fetch(k0: u32) {
    let tile_m = 16u * ROWS;
    let tile_n = 16u * COLS;
    var s = 0u;
    for (var mm = ld.t / TILE_K; mm < tile_m; mm = mm + 256u / TILE_K) {
        var v = 0.0;
        if (ld.m0 + mm < ld.size_m && k0 + ld.kl < ld.k_end) { v = load_lhs(ld.m0 + mm, ld.lhs_at); }
        lhs_next[s] = v;
        s = s + 1u;
    }
    s = 0u;
    var at = ld.rhs_at;
    for (var kr = ld.t / tile_n; kr < TILE_K; kr = kr + 256u / tile_n) {
        var v = 0.0;
        if (k0 + kr < ld.k_end && ld.col.inside) { v = load_rhs(ld.col, at); }
        rhs_next[s] = v;
        s = s + 1u;
        at = k_advance(at, ld.rhs_row_step);
    }
    ld.lhs_at = k_advance(ld.lhs_at, ld.k_step);
    ld.rhs_at = k_advance(ld.rhs_at, ld.k_step);
}

// Stores what [`fetch`] loaded into the workgroup tiles.
fn store_fetched() {
    let tile_m = 16u * ROWS;
    let tile_n = 16u * COLS;
    var s = 0u;
    for (var mm = ld.t / TILE_K; mm < tile_m; mm = mm + 256u / TILE_K) {
        l_tile[ld.kl * (tile_m / 4u + 1u) + mm / 4u][mm % 4u] = lhs_next[s];
        s = s + 1u;
    }
    s = 0u;
    for (var kr = ld.t / tile_n; kr < TILE_K; kr = kr + 256u / tile_n) {
        r_tile[kr * (tile_n / 4u) + ld.nn / 4u][ld.nn % 4u] = rhs_next[s];
        s = s + 1u;
    }
}

// What one workgroup of a launch covers: its K chunk [k_begin, k_end) and the index of its tile of
// N columns. Workgroup z = (N tiles beyond the x dimension limit) x z_groups + phase + phases x
// chunk. Also sets up the stride phase (MODE 1) and the radices of the K digits.
struct Work {
    chunk: u32,
    k_begin: u32,
    k_end: u32,
    n_tile: u32,
}

fn begin_work(wid: vec3<u32>, nwg: vec3<u32>) -> Work {
    let sub = wid.z % p.z_groups;
    if (MODE == 1u) { ph = make_phase(sub % p.phases); }
    radix = max(k_radix(), vec2<u32>(1u)); // never zero, even for an empty K
    var w: Work;
    w.chunk = sub / p.phases;
    w.k_begin = w.chunk * p.k_chunk;
    w.k_end = min(gemm_k(), w.k_begin + p.k_chunk);
    w.n_tile = wid.x + (wid.z / p.z_groups) * nwg.x;
    return w;
}

@compute @workgroup_size(16, 16)
fn conv2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let work = begin_work(wid, nwg);
    let chunk = work.chunk;
    let k_begin = work.k_begin;
    let k_end = work.k_end;
    thread_y = lid.y;
    let tile_m = 16u * ROWS;
    let tile_n = 16u * COLS;
    let size_m = gemm_m();
    let size_n = gemm_n();
    let m0 = wid.y * tile_m;
    let n0 = work.n_tile * tile_n;
    ld.t = t;
    ld.m0 = m0;
    ld.size_m = size_m;
    ld.k_end = k_end;
    ld.kl = t % TILE_K;
    ld.nn = t % tile_n;
    ld.k_step = k_digits(TILE_K);
    ld.rhs_row_step = k_digits(256u / tile_n);
    ld.lhs_at = k_digits(k_begin + ld.kl);
    ld.rhs_at = k_digits(k_begin + t / tile_n);
    ld.col = column(n0 + ld.nn);
    // this thread's outputs: rows m0 + row_of(i) (i < ROWS) and columns n0 + 4 (lid.x + 16 j) + q
    // (j < COLS / 4, q < 4), so that it reads its columns of the right tile as whole vec4s
    let vecs = COLS / 4u;
    var acc: array<vec4<f32>, 4>; // ROWS x COLS / 4 = 4
    fetch(k_begin);
    for (var k0 = k_begin; k0 < k_end; k0 = k0 + TILE_K) {
        store_fetched();
        workgroupBarrier();
        // the next slice's loads are in flight while this one is multiplied
        if (k0 + TILE_K < k_end) { fetch(k0 + TILE_K); }
        for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
            var lv: array<f32, 4>;
            var rv: array<vec4<f32>, 4>;
            if (ROWS == 4u) {
                let four = l_tile[kk * 17u + lid.y];
                lv[0] = four.x;
                lv[1] = four.y;
                lv[2] = four.z;
                lv[3] = four.w;
            } else {
                for (var i = 0u; i < ROWS; i = i + 1u) {
                    let r = row_of(i);
                    lv[i] = l_tile[kk * (tile_m / 4u + 1u) + r / 4u][r % 4u];
                }
            }
            for (var j = 0u; j < vecs; j = j + 1u) {
                rv[j] = r_tile[kk * (tile_n / 4u) + lid.x + 16u * j];
            }
            for (var i = 0u; i < ROWS; i = i + 1u) {
                for (var j = 0u; j < vecs; j = j + 1u) {
                    acc[i * vecs + j] = acc[i * vecs + j] + lv[i] * rv[j];
                }
            }
        }
        workgroupBarrier();
    }
    let start = out_start(chunk);
    let row_stride = out_row_stride();
    for (var j = 0u; j < vecs; j = j + 1u) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            let n = n0 + 4u * (lid.x + 16u * j) + q;
            if (n < size_n) {
                let column_start = start + out_column(n);
                for (var i = 0u; i < ROWS; i = i + 1u) {
                    let m = m0 + row_of(i);
                    if (m < size_m) {
                        store_output(m, column_start + m * row_stride, chunk, acc[i * vecs + j][q]);
                    }
                }
            }
        }
    }
}

// Products of at most 4 rows (few-channel layers: an RGB decoder's last layer, a 3-channel
// image's input gradient), where a 16-row tile would be mostly empty. A workgroup computes every
// row of 1024 columns: each thread the rows of its columns n0 + t + 256 j (j < 4), so that
// neighbouring threads read neighbouring columns. The right operand goes from memory straight to
// registers, each value loaded once; the left operand's slice of 16 k x 4 rows goes through
// workgroup memory and is read as one vec4 per k. Each output's sum is taken in the same order as
// in `conv2d`, so the two kernels give the same bits.
var<workgroup> narrow_lhs: array<vec4<f32>, 16>; // [16 k] of the 4 rows

@compute @workgroup_size(256)
fn conv2d_narrow(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) t: u32) {
    let work = begin_work(wid, nwg);
    let chunk = work.chunk;
    let k_begin = work.k_begin;
    let k_end = work.k_end;
    let size_m = gemm_m();
    let size_n = gemm_n();
    let n0 = work.n_tile * 1024u;
    var cols: array<Column, 4>;
    for (var j = 0u; j < 4u; j = j + 1u) {
        cols[j] = column(n0 + t + 256u * j);
    }
    // threads t < 64 load the left slice: k_begin + t % 16 (stepped by 16), row t / 16
    let lhs_k = t % 16u;
    let lhs_m = t / 16u;
    let slice_step = k_digits(16u);
    var lhs_at = k_digits(k_begin + lhs_k);
    let one = k_digits(1u);
    var at = k_digits(k_begin);
    var acc: array<vec4<f32>, 4>; // [column j] the 4 rows
    for (var k0 = k_begin; k0 < k_end; k0 = k0 + 16u) {
        if (t < 64u) {
            var v = 0.0;
            if (lhs_m < size_m && k0 + lhs_k < k_end) { v = load_lhs(lhs_m, lhs_at); }
            narrow_lhs[lhs_k][lhs_m] = v;
            lhs_at = k_advance(lhs_at, slice_step);
        }
        workgroupBarrier();
        let steps = min(16u, k_end - k0);
        for (var kk = 0u; kk < steps; kk = kk + 1u) {
            let w = narrow_lhs[kk];
            for (var j = 0u; j < 4u; j = j + 1u) {
                var r = 0.0;
                if (cols[j].inside) { r = load_rhs(cols[j], at); }
                acc[j] = acc[j] + w * r;
            }
            at = k_advance(at, one);
        }
        workgroupBarrier();
    }
    let start = out_start(chunk);
    let row_stride = out_row_stride();
    for (var j = 0u; j < 4u; j = j + 1u) {
        let n = n0 + t + 256u * j;
        if (n < size_n) {
            let column_start = start + out_column(n);
            for (var m = 0u; m < min(size_m, 4u); m = m + 1u) {
                store_output(m, column_start + m * row_stride, chunk, acc[j][m]);
            }
        }
    }
}
