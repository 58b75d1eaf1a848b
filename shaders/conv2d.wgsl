// 2-D convolution as an implicit GEMM, NCHW activations and OIHW weights, with stride, zero padding
// and an optional spatial mask over the kernel window (masked convolutions).
// One tiled core serves three products, chosen by the MODE override:
//   MODE 0  forward:          y[b, co, oy, ox]  = sum_{ci, ky, kx} w[co, ci, ky, kx] x[b, ci, oy*s+ky-p, ox*s+kx-p] (+ bias[co])
//           GEMM  M = cout, N = batch*out_h*out_w, K = cin*k_h*k_w
//   MODE 1  input gradient:   dx[b, ci, iy, ix] = sum_{co, ky, kx} w[co, ci, ky, kx] dy[b, co, (iy+p-ky)/s, (ix+p-kx)/s] (+ bias[ci])
//           GEMM  M = cin,  N = batch*in_h*in_w,  K = cout*k_h*k_w
//           This is also the forward pass of the transposed convolution (weight IOHW = this OIHW).
//   MODE 2  weight gradient:  dw[co, ci, ky, kx] = sum_{b, oy, ox} dy[b, co, oy, ox] x[b, ci, oy*s+ky-p, ox*s+kx-p]
//           GEMM  M = cout, N = cin*k_h*k_w, K = batch*out_h*out_w
// Names follow the convolution: x has `cin` channels and size in_h x in_w, y has `cout` channels and
// size out_h x out_w. Tiles: 64 x 64 outputs per 256-thread workgroup, K in slices of 16.

override MODE: u32 = 0u;
override HAS_BIAS: bool = false;
override MASKED: bool = false;

struct Params {
    batch: u32,
    cin: u32,
    cout: u32,
    _pad: u32,
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
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> lhs: array<f32>;  // MODE 0, 1: weight; MODE 2: dy
@group(0) @binding(2) var<storage, read> rhs: array<f32>;  // MODE 0, 2: x; MODE 1: dy
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

var<workgroup> l_tile: array<f32, 1024>; // [TILE_K][TILE_M]
var<workgroup> r_tile: array<f32, 1024>; // [TILE_K][TILE_N]

fn gemm_m() -> u32 {
    if (MODE == 1u) { return p.cin; }
    return p.cout;
}

fn gemm_n() -> u32 {
    if (MODE == 0u) { return p.batch * p.out_h * p.out_w; }
    if (MODE == 1u) { return p.batch * p.in_h * p.in_w; }
    return p.cin * p.k_h * p.k_w;
}

fn gemm_k() -> u32 {
    if (MODE == 0u) { return p.cin * p.k_h * p.k_w; }
    if (MODE == 1u) { return p.cout * p.k_h * p.k_w; }
    return p.batch * p.out_h * p.out_w;
}

fn mask_weight(tap: u32) -> f32 {
    if (!MASKED) { return 1.0; }
    var bits = p.mask_lo;
    var bit = tap;
    if (tap >= 32u) { bits = p.mask_hi; bit = tap - 32u; }
    return f32((bits >> bit) & 1u);
}

// x[b, ci, oy*s + ky - p, ox*s + kx - p], zero outside the image
fn load_x(b: u32, ci: u32, oy: u32, ox: u32, ky: u32, kx: u32) -> f32 {
    let iy = i32(oy * p.stride_h + ky) - i32(p.pad_h);
    let ix = i32(ox * p.stride_w + kx) - i32(p.pad_w);
    if (iy < 0 || ix < 0 || iy >= i32(p.in_h) || ix >= i32(p.in_w)) { return 0.0; }
    return rhs[((b * p.cin + ci) * p.in_h + u32(iy)) * p.in_w + u32(ix)];
}

fn load_lhs(m: u32, k: u32) -> f32 {
    let taps = p.k_h * p.k_w;
    if (MODE == 0u) {
        return lhs[m * gemm_k() + k] * mask_weight(k % taps);
    }
    if (MODE == 1u) {
        let co = k / taps;
        let tap = k % taps;
        return lhs[(co * p.cin + m) * taps + tap] * mask_weight(tap);
    }
    let plane = p.out_h * p.out_w;
    return lhs[((k / plane) * p.cout + m) * plane + k % plane];
}

fn load_rhs(k: u32, n: u32) -> f32 {
    let taps = p.k_h * p.k_w;
    if (MODE == 0u) {
        let plane = p.out_h * p.out_w;
        let tap = k % taps;
        let pix = n % plane;
        return load_x(n / plane, k / taps, pix / p.out_w, pix % p.out_w, tap / p.k_w, tap % p.k_w);
    }
    if (MODE == 1u) {
        let plane = p.in_h * p.in_w;
        let tap = k % taps;
        let pix = n % plane;
        let ty = i32(pix / p.in_w + p.pad_h) - i32(tap / p.k_w);
        let tx = i32(pix % p.in_w + p.pad_w) - i32(tap % p.k_w);
        if (ty < 0 || tx < 0) { return 0.0; }
        let uy = u32(ty);
        let ux = u32(tx);
        if (uy % p.stride_h != 0u || ux % p.stride_w != 0u) { return 0.0; }
        let oy = uy / p.stride_h;
        let ox = ux / p.stride_w;
        if (oy >= p.out_h || ox >= p.out_w) { return 0.0; }
        return rhs[(((n / plane) * p.cout + k / taps) * p.out_h + oy) * p.out_w + ox];
    }
    let plane = p.out_h * p.out_w;
    let pix = k % plane;
    let tap = n % taps;
    return load_x(k / plane, n / taps, pix / p.out_w, pix % p.out_w, tap / p.k_w, tap % p.k_w)
        * mask_weight(tap);
}

fn output_index(m: u32, n: u32) -> u32 {
    if (MODE == 0u) {
        let plane = p.out_h * p.out_w;
        return ((n / plane) * p.cout + m) * plane + n % plane;
    }
    if (MODE == 1u) {
        let plane = p.in_h * p.in_w;
        return ((n / plane) * p.cin + m) * plane + n % plane;
    }
    return m * gemm_n() + n;
}

@compute @workgroup_size(16, 16)
fn conv2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let size_m = gemm_m();
    let size_n = gemm_n();
    let size_k = gemm_k();
    let m0 = wid.y * TILE_M;
    let n0 = (wid.x + wid.z * nwg.x) * TILE_N;
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < size_k; k0 = k0 + TILE_K) {
        for (var r = 0u; r < 4u; r = r + 1u) {
            let e = t + r * 256u;
            let mm = e / TILE_K;
            let kl = e % TILE_K;
            var lv = 0.0;
            if (m0 + mm < size_m && k0 + kl < size_k) { lv = load_lhs(m0 + mm, k0 + kl); }
            l_tile[kl * TILE_M + mm] = lv;
            let kr = e / TILE_N;
            let nn = e % TILE_N;
            var rv = 0.0;
            if (k0 + kr < size_k && n0 + nn < size_n) { rv = load_rhs(k0 + kr, n0 + nn); }
            r_tile[kr * TILE_N + nn] = rv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
            var lv: array<f32, 4>;
            var rv: array<f32, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                lv[i] = l_tile[kk * TILE_M + lid.y + 16u * i];
                rv[i] = r_tile[kk * TILE_N + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i][j] = acc[i][j] + lv[i] * rv[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let n = n0 + lid.x + 16u * j;
            if (m < size_m && n < size_n) {
                var v = acc[i][j];
                if (HAS_BIAS) { v = v + bias[m]; }
                let idx = output_index(m, n);
                out[idx] = v;
            }
        }
    }
}
