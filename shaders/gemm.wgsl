// C[M, N] = op(A) op(B) (+ bias[n]), all row-major f32.
// op(A) is A [M, K] or, with TRANS_A, A stored as [K, M]; op(B) is B [K, N] or, with TRANS_B, [N, K].
// Tiles of 64 x 64 outputs per 256-thread workgroup, K in slices of 16 through workgroup memory,
// each thread keeping a 4 x 4 block of C in registers: four adjacent rows by four adjacent columns,
// read from the tiles as one vec4 each per K step. Edges are bounds-checked (any M, N, K).

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

// [TILE_K][TILE_M + 4] and [TILE_K][TILE_N + 4] as fours: the 4 extra floats per k spread the
// stores of neighbouring threads that take neighbouring k (A not transposed, B transposed) over the
// memory banks
const ROW_VECS: u32 = TILE_M / 4u + 1u;
var<workgroup> a_tile: array<vec4<f32>, 272>; // TILE_K * ROW_VECS
var<workgroup> b_tile: array<vec4<f32>, 272>;

fn load_a(row: u32, col: u32) -> f32 {
    if (row >= p.m || col >= p.k) { return 0.0; }
    if (TRANS_A) { return a[col * p.m + row]; }
    return a[row * p.k + col];
}

fn load_b(row: u32, col: u32) -> f32 {
    if (row >= p.k || col >= p.n) { return 0.0; }
    if (TRANS_B) { return b[col * p.k + row]; }
    return b[row * p.n + col];
}

// The r-th (r < 4) element thread t loads of each tile, as (row of A, column of B, k of A, k of B)
// within the tiles: the index order follows the memory layout so that neighbouring threads read
// neighbours.
fn tile_element(t: u32, r: u32) -> vec4<u32> {
    let e = t + r * 256u;
    var at: vec2<u32>; // (mm, ka)
    if (TRANS_A) { at = vec2<u32>(e % TILE_M, e / TILE_M); } else { at = vec2<u32>(e / TILE_K, e % TILE_K); }
    var bt: vec2<u32>; // (nn, kb)
    if (TRANS_B) { bt = vec2<u32>(e / TILE_K, e % TILE_K); } else { bt = vec2<u32>(e % TILE_N, e / TILE_N); }
    return vec4<u32>(at.x, bt.x, at.y, bt.y);
}

// Loads thread t's four elements of the K slice [k0, k0 + TILE_K) of A and B.
fn fetch(m0: u32, n0: u32, k0: u32, t: u32, a_next: ptr<function, vec4<f32>>, b_next: ptr<function, vec4<f32>>) {
    for (var r = 0u; r < 4u; r = r + 1u) {
        let e = tile_element(t, r);
        (*a_next)[r] = load_a(m0 + e.x, k0 + e.z);
        (*b_next)[r] = load_b(k0 + e.w, n0 + e.y);
    }
}

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let m0 = wid.y * TILE_M;
    let n0 = wid.x * TILE_N;
    // the 4 x 4 block as four row vectors: registers, never a dynamically indexed array
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // the next K slice is loaded into registers while the current one is multiplied
    var a_next: vec4<f32>;
    var b_next: vec4<f32>;
    fetch(m0, n0, 0u, t, &a_next, &b_next);
    for (var k0 = 0u; k0 < p.k; k0 = k0 + TILE_K) {
        for (var r = 0u; r < 4u; r = r + 1u) {
            let e = tile_element(t, r);
            a_tile[e.z * ROW_VECS + e.x / 4u][e.x % 4u] = a_next[r];
            b_tile[e.w * ROW_VECS + e.y / 4u][e.y % 4u] = b_next[r];
        }
        workgroupBarrier();
        if (k0 + TILE_K < p.k) { fetch(m0, n0, k0 + TILE_K, t, &a_next, &b_next); }
        for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
            let av = a_tile[kk * ROW_VECS + lid.y];
            let bv = b_tile[kk * ROW_VECS + lid.x];
            acc0 = acc0 + av.x * bv;
            acc1 = acc1 + av.y * bv;
            acc2 = acc2 + av.z * bv;
            acc3 = acc3 + av.w * bv;
        }
        workgroupBarrier();
    }
    let row = m0 + 4u * lid.y;
    let col = n0 + 4u * lid.x;
    store_row(row, col, acc0);
    store_row(row + 1u, col, acc1);
    store_row(row + 2u, col, acc2);
    store_row(row + 3u, col, acc3);
}

// Writes a thread's outputs (row, col + j), j < 4, that lie inside C.
fn store_row(row: u32, col: u32, v: vec4<f32>) {
    if (row >= p.m) { return; }
    for (var j = 0u; j < 4u; j = j + 1u) {
        let n = col + j;
        if (n < p.n) {
            var x = v[j];
            if (HAS_BIAS) { x = x + bias[n]; }
            c[row * p.n + n] = x;
        }
    }
}
