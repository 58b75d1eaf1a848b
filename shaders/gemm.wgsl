// C[M, N] = op(A) op(B) (+ bias[n]), all row-major f32.
// op(A) is A [M, K] or, with TRANS_A, A stored as [K, M]; op(B) is B [K, N] or, with TRANS_B, [N, K].
// `gemm`: tiles of 64 x 64 outputs per 256-thread workgroup, K in slices of 16 through workgroup
// memory, each thread keeping a 4 x 4 block of C in registers: four adjacent rows by four adjacent
// columns, read from the tiles as one vec4 each per K step. `gemm_wide`, for large products: tiles
// of 128 x 128 outputs, K in slices of 8, an 8 x 8 block per thread (two such fours of rows, 64
// apart, by two fours of columns), so that a K step reads 4 vec4s for 64 products instead of 2 for
// 16. Both add each output's products in increasing k, so they give the same bits. Edges are
// bounds-checked (any M, N, K).

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

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;
const WIDE: u32 = 128u;
const WIDE_K: u32 = 8u;

// [K slice][tile edge + 4] as fours: the 4 extra floats per k spread the stores of neighbouring
// threads that take neighbouring k (A not transposed, B transposed) over the memory banks.
// 272 = TILE_K * (TILE / 4 + 1) >= WIDE_K * (WIDE / 4 + 1) = 264.
var<workgroup> a_tile: array<vec4<f32>, 272>;
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

// The r-th (r < 4) element thread t loads of each tile of `edge` rows or columns by `depth` k, as
// (row of A, column of B, k of A, k of B) within the tiles: the index order follows the memory
// layout so that neighbouring threads read neighbours.
fn tile_element(t: u32, r: u32, edge: u32, depth: u32) -> vec4<u32> {
    let e = t + r * 256u;
    var at: vec2<u32>; // (mm, ka)
    if (TRANS_A) { at = vec2<u32>(e % edge, e / edge); } else { at = vec2<u32>(e / depth, e % depth); }
    var bt: vec2<u32>; // (nn, kb)
    if (TRANS_B) { bt = vec2<u32>(e / depth, e % depth); } else { bt = vec2<u32>(e % edge, e / edge); }
    return vec4<u32>(at.x, bt.x, at.y, bt.y);
}

// Loads thread t's four elements of the K slice [k0, k0 + depth) of A and B (tiles of `edge`).
fn fetch(m0: u32, n0: u32, k0: u32, t: u32, edge: u32, depth: u32, a_next: ptr<function, vec4<f32>>,
         b_next: ptr<function, vec4<f32>>) {
    for (var r = 0u; r < 4u; r = r + 1u) {
        let e = tile_element(t, r, edge, depth);
        (*a_next)[r] = load_a(m0 + e.x, k0 + e.z);
        (*b_next)[r] = load_b(k0 + e.w, n0 + e.y);
    }
}

// Stores what `fetch` loaded into the tiles, whose rows hold `edge / 4 + 1` vec4s.
fn store_fetched(t: u32, edge: u32, depth: u32, a_next: vec4<f32>, b_next: vec4<f32>) {
    let row_vecs = edge / 4u + 1u;
    for (var r = 0u; r < 4u; r = r + 1u) {
        let e = tile_element(t, r, edge, depth);
        a_tile[e.z * row_vecs + e.x / 4u][e.x % 4u] = a_next[r];
        b_tile[e.w * row_vecs + e.y / 4u][e.y % 4u] = b_next[r];
    }
}

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let m0 = wid.y * TILE;
    let n0 = wid.x * TILE;
    // the 4 x 4 block as four row vectors: registers, never a dynamically indexed array
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // the next K slice is loaded into registers while the current one is multiplied
    var a_next: vec4<f32>;
    var b_next: vec4<f32>;
    fetch(m0, n0, 0u, t, TILE, TILE_K, &a_next, &b_next);
    for (var k0 = 0u; k0 < p.k; k0 = k0 + TILE_K) {
        store_fetched(t, TILE, TILE_K, a_next, b_next);
        workgroupBarrier();
        if (k0 + TILE_K < p.k) { fetch(m0, n0, k0 + TILE_K, t, TILE, TILE_K, &a_next, &b_next); }
        for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
            let av = a_tile[kk * (TILE / 4u + 1u) + lid.y];
            let bv = b_tile[kk * (TILE / 4u + 1u) + lid.x];
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

// One k of an 8 x 8 block: row r of the block (value `a` of op(A)) times its two fours of columns.
fn accumulate(lo: ptr<function, vec4<f32>>, hi: ptr<function, vec4<f32>>, a: f32, b_lo: vec4<f32>,
              b_hi: vec4<f32>) {
    *lo = *lo + a * b_lo;
    *hi = *hi + a * b_hi;
}

@compute @workgroup_size(16, 16)
fn gemm_wide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(local_invocation_index) t: u32) {
    let m0 = wid.y * WIDE;
    let n0 = wid.x * WIDE;
    // the thread's rows m0 + 4 lid.y + i and m0 + 64 + 4 lid.y + i (i < 4), columns n0 + 4 lid.x + j
    // and n0 + 64 + 4 lid.x + j (j < 4): row i's two fours of columns in (lo_i, hi_i), the rows 64
    // further on in (lo_{4+i}, hi_{4+i}); registers, never a dynamically indexed array
    var lo0 = vec4<f32>(0.0); var hi0 = vec4<f32>(0.0);
    var lo1 = vec4<f32>(0.0); var hi1 = vec4<f32>(0.0);
    var lo2 = vec4<f32>(0.0); var hi2 = vec4<f32>(0.0);
    var lo3 = vec4<f32>(0.0); var hi3 = vec4<f32>(0.0);
    var lo4 = vec4<f32>(0.0); var hi4 = vec4<f32>(0.0);
    var lo5 = vec4<f32>(0.0); var hi5 = vec4<f32>(0.0);
    var lo6 = vec4<f32>(0.0); var hi6 = vec4<f32>(0.0);
    var lo7 = vec4<f32>(0.0); var hi7 = vec4<f32>(0.0);
    var a_next: vec4<f32>;
    var b_next: vec4<f32>;
    let row_vecs = WIDE / 4u + 1u;
    fetch(m0, n0, 0u, t, WIDE, WIDE_K, &a_next, &b_next);
    for (var k0 = 0u; k0 < p.k; k0 = k0 + WIDE_K) {
        store_fetched(t, WIDE, WIDE_K, a_next, b_next);
        workgroupBarrier();
        if (k0 + WIDE_K < p.k) { fetch(m0, n0, k0 + WIDE_K, t, WIDE, WIDE_K, &a_next, &b_next); }
        for (var kk = 0u; kk < WIDE_K; kk = kk + 1u) {
            let a_near = a_tile[kk * row_vecs + lid.y];
            let a_far = a_tile[kk * row_vecs + 16u + lid.y];
            let b_lo = b_tile[kk * row_vecs + lid.x];
            let b_hi = b_tile[kk * row_vecs + 16u + lid.x];
            accumulate(&lo0, &hi0, a_near.x, b_lo, b_hi);
            accumulate(&lo1, &hi1, a_near.y, b_lo, b_hi);
            accumulate(&lo2, &hi2, a_near.z, b_lo, b_hi);
            accumulate(&lo3, &hi3, a_near.w, b_lo, b_hi);
            accumulate(&lo4, &hi4, a_far.x, b_lo, b_hi);
            accumulate(&lo5, &hi5, a_far.y, b_lo, b_hi);
            accumulate(&lo6, &hi6, a_far.z, b_lo, b_hi);
            accumulate(&lo7, &hi7, a_far.w, b_lo, b_hi);
        }
        workgroupBarrier();
    }
    let near = m0 + 4u * lid.y;
    let far = near + 64u;
    let col_lo = n0 + 4u * lid.x;
    let col_hi = col_lo + 64u;
    store_row(near, col_lo, lo0); store_row(near, col_hi, hi0);
    store_row(near + 1u, col_lo, lo1); store_row(near + 1u, col_hi, hi1);
    store_row(near + 2u, col_lo, lo2); store_row(near + 2u, col_hi, hi2);
    store_row(near + 3u, col_lo, lo3); store_row(near + 3u, col_hi, hi3);
    store_row(far, col_lo, lo4); store_row(far, col_hi, hi4);
    store_row(far + 1u, col_lo, lo5); store_row(far + 1u, col_hi, hi5);
    store_row(far + 2u, col_lo, lo6); store_row(far + 2u, col_hi, hi6);
    store_row(far + 3u, col_lo, lo7); store_row(far + 3u, col_hi, hi7);
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
