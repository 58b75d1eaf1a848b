// Kernels for CPU adapters. A software driver such as Mesa's lavapipe runs the invocations of a
// workgroup as the SIMD lanes of one CPU thread: every lane's load from a buffer is a separate
// scalar load (a loop over the lanes, each with its own bounds check), integer division is done
// lane by lane, each barrier switches between the lanes' contexts, and a lane's values that do
// not fit the CPU's vector registers are stored to the stack and loaded back. So these kernels
// use no workgroup memory and no barriers, load vec4s, keep divisions out of inner loops, let the
// lanes of a subgroup (at least 8) share the left operand of a product through subgroup
// broadcasts instead of each loading it, and add four k into one row's sums before moving to the
// next row, so that those sums are stored once per four k.
//
// gemm:     C(m, n) = sum_k A(m, k) B(k, n) (+ bias[m] or bias[n]), every operand read through
//           strides, so that convolutions use it on NCHW tensors without copies:
//             A(m, k) = a[m * a_m + (k / a_inner) * a_outer + (k % a_inner) * a_k]
//             B(k, n) = b[(n / b_inner) * b_outer + n % b_inner + (k / b_k_inner) * b_k_outer
//                         + (k % b_k_inner) * b_k]
//             C(m, n) = c[chunk * c_chunk + (n / c_inner) * c_outer + n % c_inner + m * c_m]
//           An invocation computes 8 rows x 8 columns. Lane r of the subgroup loads row m0 + r of
//           A, four k at a time, and broadcasts it to the others. With B_VEC4, B is read as two
//           vec4 per k (the host checks that b_inner, b_outer and b_k are multiples of 4). K may
//           be split into chunks (workgroup z), each written to its own copy of C.
// gemm_tall: the same product for M of 32 or more, 8 x GROUPS rows x 8 columns per invocation
//           (see below), with A and B read as vec4 along k where they are contiguous there.
//           B's k and columns may also lie in blocks of blocks, as a stride-1 convolution's
//           columns do when they are read from x shifted once per kernel column (S, laid out
//           [b][ci][kx][out_h + kH - 1][out_w]): B(k = (ci, ky, kx), n = (b, pixel)) =
//           S[b, ci, kx, pixel + ky * out_w], so B(k, n) = b[column_base(n) + k's offset] with
//             k's offset = (k / (b_k_inner b_k_mid)) * b_k_far + ((k / b_k_inner) % b_k_mid)
//                          * b_k_outer + (k % b_k_inner) * b_k      (b_k_mid 0: no groups)
//             column_base(n) = (n / (b_inner b_mid)) * b_far + ((n / b_inner) % b_mid) * b_outer
//                          + (n % b_inner) * b_n                   (b_mid 0: as above)
//           where the weight gradient reads S with k and n exchanged. Without B_KMAJOR the k are
//           walked one at a time, so blocks need not hold whole groups of 4.
// im2col:   the columns of a convolution, cols[j, n] (or with TRANSPOSED cols[n, j]) for
//           j = (ci, ky, kx) and n = (b, oy, ox): x[b, ci, oy*s + ky - p, ox*s + kx - p], zero in
//           the padding and at masked kernel positions. cols[j, n] is laid out as the product
//           that reads it reads B(j, n): the host lays it out in slabs of 64 columns (the columns
//           of one gemm_tall workgroup), j's rows of a slab contiguous, so that a workgroup reads
//           one block of memory. With TRANSPOSED, rows are `ld` apart (a multiple of 4).
//           The host passes a kernel window (the positions a mask keeps) as the kernel, and the
//           padding p may be negative (a flipped window that starts after the flipped kernel).
//           With ROW_TEXELS (stride 1 or 2 along x, out_w a multiple of 4) and TEX, the four
//           columns of an invocation read x's copy by rows: at stride 1 each kernel row from
//           three texels (kernels up to 5 wide; wider ones each position from two), at stride 2
//           from four, instead of one texel per column and kernel position.
// nearest:  the nearest-code search of the vector quantizer on the same block: C(code, n) are the
//           dot products of codes (A = the codebook [K, D], a) with the rows n = (b, s) of an NCHW
//           z (B, with `hw` a multiple of 4), folded at once into each row's running argmin of
//           |e|^2 - 2 z.e (bias = the codes' squared norms); the K x N products are never stored.
//           An invocation takes 64 codes (gemm_tall's rows) x 8 rows of z per step. Workgroup z
//           takes a chunk of codes; c gets each row's best code, c_dist its distance.
// flipped_weight: a convolution's weight (or its kernel window) flipped along both kernel axes,
//           its channel axes exchanged: the weight of the convolution of dy that gives a stride-1
//           input gradient.
// col2im:   the adjoint: dx[b, ci, iy, ix] = sum over the kernel positions that reach (iy, ix) of
//           cols[(ci, ky, kx), (b, oy, ox)] (+ bias[ci]), masked positions skipped. With
//           kernels at most twice the stride, the (at most four) positions' offsets are found
//           once for all channels.
// With TEX, every kernel reads the operands bound at a and b from their texture copies instead
// (the host copies them just before the launch): the software driver fetches texels with vector
// gathers, but loads a storage buffer one lane at a time.

override B_VEC4: bool = true;
override A_VEC4: bool = false;  // gemm_tall: A read as vec4 along k (a_k == 1)
override GROUPS: u32 = 8u;      // gemm_tall: groups of 8 rows per invocation, 4 or 8
override C_VEC4: bool = false;  // gemm_tall: C written as vec4 (N, rows and blocks on whole vec4)
override B_KMAJOR: bool = false; // gemm_tall: B read as vec4 along k (b_k == 1, columns b_outer apart, b_inner == 1)
override BIAS: u32 = 0u;       // gemm: 0 none, 1 one per row m, 2 one per column n; col2im: 1 per channel
override TRANSPOSED: bool = false;
override MASKED: bool = false;
override WG: u32 = 8u;         // gemm: invocations per workgroup
override RESIDUAL: bool = false; // gemm, gemm_tall, col2im: C = residual + result (before the ReLU; not split along K)
override GATED: bool = false;   // gemm, gemm_tall: the gate's reads compiled in (used where p.gate is 1)
override TEX: bool = false;     // A and B (those bound) read from their texture copies
override ROW_TEXELS: bool = false; // im2col with TEX: four columns of one output row read by rows (stride 1 or 2)

const NO_WRAP: u32 = 0xffffffffu; // an `inner` that never wraps: a plain row-major operand

struct Params {
    m: u32,
    n: u32,
    k: u32,
    k_chunk: u32,
    a_m: u32,
    a_k: u32,
    a_inner: u32,
    a_outer: u32,
    b_k: u32,
    b_inner: u32,
    b_outer: u32,
    b_k_inner: u32, // blocks along k of B (of whole groups of 4): NO_WRAP where k does not wrap
    b_k_outer: u32,
    c_m: u32,
    c_inner: u32,
    c_outer: u32,
    c_chunk: u32,
    ld: u32,
    batch: u32,
    cin: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    k_h: u32,
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,  // im2col reads the paddings as i32: a flipped kernel window's may be negative
    pad_w: u32,
    mask_lo: u32,
    mask_hi: u32,
    relu: u32,   // gemm, gemm_tall, col2im: 1 stores max(result, 0) (a product not split along K only)
    gate: u32,   // gemm, gemm_tall, col2im: 1 stores the result where gate > 0, else 0 (last; not split)
    // gemm_tall: blocks of b_k_inner k grouped by b_k_mid, groups b_k_far apart (0: no groups)
    b_k_mid: u32,
    b_k_far: u32,
    // columns in blocks of b_inner, b_n apart within one, grouped by b_mid, groups b_far apart
    // (b_mid 0: no groups, columns 1 apart within a block)
    b_n: u32,
    b_mid: u32,
    b_far: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> c_dist: array<f32>; // nearest: best distances
@group(0) @binding(6) var<storage, read> a_vec4: array<vec4<f32>>;   // gemm_tall with A_VEC4: a again
@group(0) @binding(7) var<storage, read_write> cols4: array<vec4<f32>>; // im2col: the columns
@group(0) @binding(8) var<storage, read_write> c_vec4: array<vec4<f32>>; // gemm_tall with C_VEC4: c again
// gemm, gemm_tall, col2im: laid out as c, read as vec4 (one load where C is written by vec4)
@group(0) @binding(9) var<storage, read> residual: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> gate: array<vec4<f32>>;
@group(0) @binding(11) var a_tex: texture_2d<f32>; // with TEX: a's copy
@group(0) @binding(12) var b_tex: texture_2d<f32>; // with TEX: b's copy

// vec4 i of b, from its copy with TEX.
fn b_vec4(i: u32) -> vec4<f32> {
    if (TEX) { return texel(b_tex, i); }
    return b[i];
}

// Element e of a, from its copy with TEX.
fn a_at(e: u32) -> f32 {
    if (TEX) { return component(texel(a_tex, e >> 2u), e & 3u); }
    return a[e];
}

// vec4 i of a, from its copy with TEX.
fn a_vec4_at(i: u32) -> vec4<f32> {
    if (TEX) { return texel(a_tex, i); }
    return a_vec4[i];
}

// Element e of b, from its copy with TEX.
fn b_at(e: u32) -> f32 {
    return component(b_vec4(e >> 2u), e & 3u);
}

// B(k, n .. n + 3) from the column bases of this invocation and k's offset `off`.
fn load_b4(base: vec4<u32>, off: u32) -> vec4<f32> {
    if (B_VEC4) { return b_vec4((base.x + off) >> 2u); }
    return vec4<f32>(b_at(base.x + off), b_at(base.y + off), b_at(base.z + off), b_at(base.w + off));
}

fn column_base(n: u32) -> u32 {
    let block = n / p.b_inner;
    if (p.b_mid == 0u) { return block * p.b_outer + n % p.b_inner; }
    return (block / p.b_mid) * p.b_far + (block % p.b_mid) * p.b_outer + (n % p.b_inner) * p.b_n;
}

// The bases of columns n .. n + 3 for `load_b4` (only the first with B_VEC4).
fn column_bases(n: u32) -> vec4<u32> {
    if (B_VEC4) { return vec4<u32>(column_base(n), 0u, 0u, 0u); }
    return vec4<u32>(column_base(n), column_base(n + 1u), column_base(n + 2u), column_base(n + 3u));
}

// The offset `off` of k in an operand whose k lies in blocks of `block` (k's stride `stride`
// within a block, blocks `gap` apart) moved on by four k, across a block boundary (`inner` is k's
// place in its block).
fn next_four_k(inner: ptr<function, u32>, off: ptr<function, u32>, stride: u32, block: u32, gap: u32) {
    *inner += 4u;
    *off += 4u * stride;
    if (*inner >= block) {
        *inner -= block;
        *off += gap - block * stride;
    }
}

// A's offset of k moved on by four k.
fn next_four_k_of_a(inner: ptr<function, u32>, off: ptr<function, u32>) {
    next_four_k(inner, off, p.a_k, p.a_inner, p.a_outer);
}

// B's offset of k moved on by four k.
fn next_four_k_of_b(inner: ptr<function, u32>, off: ptr<function, u32>) {
    next_four_k(inner, off, p.b_k, p.b_k_inner, p.b_k_outer);
}

// The offset of k in an operand whose k lies in blocks as `next_four_k` says, and k's place in
// its block (the start of the offsets that `next_four_k` moves on).
fn k_offset(k: u32, stride: u32, block: u32, gap: u32) -> vec2<u32> {
    let inner = k % block;
    return vec2<u32>((k / block) * gap + inner * stride, inner);
}

// A's offset of k (added to a row's base), and k's place in its block.
fn a_k_offset(k: u32) -> vec2<u32> {
    return k_offset(k, p.a_k, p.a_inner, p.a_outer);
}

// B's offset of k (added to a column's base), and k's place in its block.
fn b_k_offset(k: u32) -> vec2<u32> {
    return k_offset(k, p.b_k, p.b_k_inner, p.b_k_outer);
}

// B's offset of one k (added to a column's base) where k may lie in blocks of blocks, as a
// convolution's kernel taps do: `inner` is k's place in its block, `mid` its block's in the group.
struct KWalk {
    off: u32,
    inner: u32,
    mid: u32,
}

// The walk at k.
fn k_walk_at(k: u32) -> KWalk {
    let inner = k % p.b_k_inner;
    let block = k / p.b_k_inner;
    if (p.b_k_mid == 0u) { return KWalk(block * p.b_k_outer + inner * p.b_k, inner, 0u); }
    let mid = block % p.b_k_mid;
    return KWalk((block / p.b_k_mid) * p.b_k_far + mid * p.b_k_outer + inner * p.b_k, inner, mid);
}

// The walk moved on by one k (a block's last k to the next block's first, a group's last block
// to the next group's first). Without groups `mid` counts blocks and never wraps.
fn k_walk_next(w: KWalk) -> KWalk {
    let block_ends = w.inner + 1u == p.b_k_inner;
    let group_ends = block_ends && w.mid + 1u == p.b_k_mid;
    var off = w.off + p.b_k;
    off += select(0u, p.b_k_outer - p.b_k_inner * p.b_k, block_ends);
    off += select(0u, p.b_k_far - p.b_k_mid * p.b_k_outer, group_ends);
    let inner = select(w.inner + 1u, 0u, block_ends);
    let mid = select(w.mid + u32(block_ends), 0u, group_ends);
    return KWalk(off, inner, mid);
}

// The walk moved on by four k where B's blocks hold whole groups of 4 (B_KMAJOR: the four are
// read together), as `next_four_k_of_b` moves an offset.
fn k_walk_four_in_blocks(w: KWalk) -> KWalk {
    var inner = w.inner;
    var off = w.off;
    next_four_k_of_b(&inner, &off);
    return KWalk(off, inner, w.mid);
}

// The offsets of the walk's next four k, the walk moved on past them.
fn k_walk_four(w: ptr<function, KWalk>) -> vec4<u32> {
    let k0 = (*w).off;
    *w = k_walk_next(*w);
    let k1 = (*w).off;
    *w = k_walk_next(*w);
    let k2 = (*w).off;
    *w = k_walk_next(*w);
    let k3 = (*w).off;
    *w = k_walk_next(*w);
    return vec4<u32>(k0, k1, k2, k3);
}

@compute @workgroup_size(WG)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {
    let chunk = wid.z;
    let m0 = wid.x * 8u;
    let n0 = (wid.y * WG + lid.x) * 8u;
    let k_begin = chunk * p.k_chunk;
    let k_end = min(p.k, k_begin + p.k_chunk);
    // lanes past row 7 or past M load a valid row too (never broadcast, or never stored)
    let row = min(m0 + min(lane, 7u), p.m - 1u);
    // A's offset of this lane's row at k, kept without division: k = outer * a_inner + inner
    let a_start = a_k_offset(k_begin);
    var a_off = row * p.a_m + a_start.x;
    var inner = a_start.y;
    let base0 = column_bases(n0);
    let base1 = column_bases(n0 + 4u);
    let b_start = b_k_offset(k_begin);
    var b_off = b_start.x;
    var b_inner = b_start.y;
    // the 8 x 8 block: columns 0..3 (left) and 4..7 (right) of rows 0..7
    var left: array<vec4<f32>, 8>;
    var right: array<vec4<f32>, 8>;
    // whole groups of 4 k, then the rest one at a time
    let k_whole = k_begin + (k_end - k_begin) / 4u * 4u;
    for (var k0 = k_begin; k0 < k_whole; k0 += 4u) {
        let av = vec4<f32>(a_at(a_off), a_at(a_off + p.a_k), a_at(a_off + 2u * p.a_k), a_at(a_off + 3u * p.a_k));
        accumulate8x4(&left, av, load_b_block(base0, b_off));
        accumulate8x4(&right, av, load_b_block(base1, b_off));
        next_four_k_of_a(&inner, &a_off);
        next_four_k_of_b(&b_inner, &b_off);
    }
    // the rest lies inside one block of A and of B along k (blocks hold whole groups of 4)
    for (var k = k_whole; k < k_end; k++) {
        accumulate8(&left, a_at(a_off), load_b4(base0, b_off));
        accumulate8(&right, a_at(a_off), load_b4(base1, b_off));
        a_off += p.a_k;
        b_off += p.b_k;
    }
    store8(left, m0, n0, c_columns(n0), chunk);
    store8(right, m0, n0 + 4u, c_columns(n0 + 4u), chunk);
}

// gemm_tall: the GEMM for products with many rows (8 x GROUPS rows x 8 columns per invocation).
// Lane r of the subgroup loads row r of each group of 8 rows and broadcasts it; B is two vec4 per
// k. With A_VEC4, A is read four k at a time as one vec4, so that an invocation issues few loads
// per product term: on a software driver each load of a lane costs a loop over the lanes. With
// B_KMAJOR, B is read as one vec4 along k per column (a transposed operand, such as the columns
// of a convolution for its weight gradient, whose k then lie in blocks: the slabs). With C_VEC4,
// C is written as one vec4 per row and four columns. Each four k go into the left halves
// (columns n0 .. n0 + 3) of all rows, then into the right halves, so that one half's block of B
// is live at a time.

// One k into a group of 8 rows x 4 columns: row i of the group is lane i's `ak`.
fn accumulate8(acc: ptr<function, array<vec4<f32>, 8>>, ak: f32, bk: vec4<f32>) {
    (*acc)[0] += subgroupBroadcast(ak, 0u) * bk;
    (*acc)[1] += subgroupBroadcast(ak, 1u) * bk;
    (*acc)[2] += subgroupBroadcast(ak, 2u) * bk;
    (*acc)[3] += subgroupBroadcast(ak, 3u) * bk;
    (*acc)[4] += subgroupBroadcast(ak, 4u) * bk;
    (*acc)[5] += subgroupBroadcast(ak, 5u) * bk;
    (*acc)[6] += subgroupBroadcast(ak, 6u) * bk;
    (*acc)[7] += subgroupBroadcast(ak, 7u) * bk;
}

// B(k0 + i, n .. n + 3) for i = 0 .. 3 as the columns of a matrix, from the column bases of
// this invocation and k0's offset `off` (k0 a multiple of 4; with B_KMAJOR, `off` too).
fn load_b_block(base: vec4<u32>, off: u32) -> mat4x4<f32> {
    if (B_KMAJOR) {
        return transpose(mat4x4<f32>(b_vec4((base.x + off) >> 2u), b_vec4((base.y + off) >> 2u), b_vec4((base.z + off) >> 2u), b_vec4((base.w + off) >> 2u)));
    }
    return mat4x4<f32>(load_b4(base, off), load_b4(base, off + p.b_k), load_b4(base, off + 2u * p.b_k), load_b4(base, off + 3u * p.b_k));
}

// gemm_tall: B(k0 + i, n .. n + 3) for i = 0 .. 3 as the columns of a matrix: with B_KMAJOR
// from k0's offset `off` (see `load_b_block`), else from the four k's offsets `rows` (`off` not
// looked at).
fn load_b_tall(base: vec4<u32>, off: u32, rows: vec4<u32>) -> mat4x4<f32> {
    if (B_KMAJOR) { return load_b_block(base, off); }
    return mat4x4<f32>(load_b4(base, rows.x), load_b4(base, rows.y), load_b4(base, rows.z), load_b4(base, rows.w));
}

// Four k into a group of 8 rows x 4 columns: row i of the group at k0 + j is component j of
// lane i's `a`, B at k0 + j is column j of `b_block`. Each row's sums stay in registers over the
// four k (added in the order of k).
fn accumulate8x4(acc: ptr<function, array<vec4<f32>, 8>>, a: vec4<f32>, b_block: mat4x4<f32>) {
    (*acc)[0] = row_sum((*acc)[0], subgroupBroadcast(a, 0u), b_block);
    (*acc)[1] = row_sum((*acc)[1], subgroupBroadcast(a, 1u), b_block);
    (*acc)[2] = row_sum((*acc)[2], subgroupBroadcast(a, 2u), b_block);
    (*acc)[3] = row_sum((*acc)[3], subgroupBroadcast(a, 3u), b_block);
    (*acc)[4] = row_sum((*acc)[4], subgroupBroadcast(a, 4u), b_block);
    (*acc)[5] = row_sum((*acc)[5], subgroupBroadcast(a, 5u), b_block);
    (*acc)[6] = row_sum((*acc)[6], subgroupBroadcast(a, 6u), b_block);
    (*acc)[7] = row_sum((*acc)[7], subgroupBroadcast(a, 7u), b_block);
}

// A row's sums plus its four terms A(row, k0 + j) B(k0 + j, .), in the order of k.
fn row_sum(acc: vec4<f32>, a: vec4<f32>, b_block: mat4x4<f32>) -> vec4<f32> {
    var sum = acc;
    sum += a.x * b_block[0];
    sum += a.y * b_block[1];
    sum += a.z * b_block[2];
    sum += a.w * b_block[3];
    return sum;
}

// A(row, k .. k + 3) from the row's offset plus k's.
fn load_a4(off: u32) -> vec4<f32> {
    if (A_VEC4) { return a_vec4_at(off >> 2u); }
    return vec4<f32>(a_at(off), a_at(off + p.a_k), a_at(off + 2u * p.a_k), a_at(off + 3u * p.a_k));
}

// Row m (skipped past M) of C at columns n0 .. n0 + 3 (those before N). The gate's reads are
// compiled in only where GATED: where a gate is given, and in the variants that input gradients
// share with and without one. Elsewhere they made a software driver compile a variant for two to
// three times as long (a product stored element by element: 10-13 s against 3.4-4.2 s).
fn store_row4(v: vec4<f32>, m: u32, n0: u32, columns: vec4<u32>, chunk: u32) {
    if (m >= p.m) { return; }
    var row = v;
    if (BIAS == 1u && chunk == 0u) { row += bias[m]; }
    if (C_VEC4) {
        // the four columns lie in one block of C (N and its blocks hold whole vec4)
        if (n0 >= p.n) { return; }
        if (BIAS == 2u && chunk == 0u) { row += vec4<f32>(bias[n0], bias[n0 + 1u], bias[n0 + 2u], bias[n0 + 3u]); }
        let e = chunk * p.c_chunk + columns.x + m * p.c_m;
        if (RESIDUAL) { row = residual[e >> 2u] + row; }
        if (p.relu == 1u) { row = max(row, vec4<f32>(0.0)); }
        if (GATED && p.gate == 1u) {
            let open = gate[e >> 2u] > vec4<f32>(0.0);
            row = select(vec4<f32>(0.0), row, open);
        }
        c_vec4[e >> 2u] = row;
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + j;
        if (n >= p.n) { break; }
        var v_j = row[j];
        if (BIAS == 2u && chunk == 0u) { v_j += bias[n]; }
        let e = chunk * p.c_chunk + columns[j] + m * p.c_m;
        if (RESIDUAL) { v_j = residual[e >> 2u][e & 3u] + v_j; }
        if (p.relu == 1u) { v_j = max(v_j, 0.0); }
        if (GATED && p.gate == 1u) { v_j = select(0.0, v_j, gate[e >> 2u][e & 3u] > 0.0); }
        c[e] = v_j;
    }
}

// Rows m0 .. m0 + 7 of C at columns n0 .. n0 + 3, which lie at `columns` (`c_columns(n0)`).
fn store8(acc: array<vec4<f32>, 8>, m0: u32, n0: u32, columns: vec4<u32>, chunk: u32) {
    store_row4(acc[0], m0, n0, columns, chunk);
    store_row4(acc[1], m0 + 1u, n0, columns, chunk);
    store_row4(acc[2], m0 + 2u, n0, columns, chunk);
    store_row4(acc[3], m0 + 3u, n0, columns, chunk);
    store_row4(acc[4], m0 + 4u, n0, columns, chunk);
    store_row4(acc[5], m0 + 5u, n0, columns, chunk);
    store_row4(acc[6], m0 + 6u, n0, columns, chunk);
    store_row4(acc[7], m0 + 7u, n0, columns, chunk);
}

// Where columns n0 .. n0 + 3 of the product lie in a row of C (its columns may wrap in blocks).
fn c_columns(n0: u32) -> vec4<u32> {
    let n = vec4<u32>(n0, n0 + 1u, n0 + 2u, n0 + 3u);
    if (p.c_inner == NO_WRAP) { return n; }
    return (n / p.c_inner) * p.c_outer + n % p.c_inner;
}

@compute @workgroup_size(WG)
fn gemm_tall(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(subgroup_invocation_id) lane: u32) {
    let chunk = wid.z;
    let m0 = wid.x * 8u * GROUPS;
    let n0 = (wid.y * WG + lid.x) * 8u;
    let k_begin = chunk * p.k_chunk;
    let k_end = min(p.k, k_begin + p.k_chunk);
    // lanes past row 7 of a group or past M load a valid row too (never broadcast, or never stored)
    let l = min(lane, 7u);
    let row0 = min(m0 + 0u + l, p.m - 1u) * p.a_m;
    let row1 = min(m0 + 8u + l, p.m - 1u) * p.a_m;
    let row2 = min(m0 + 16u + l, p.m - 1u) * p.a_m;
    let row3 = min(m0 + 24u + l, p.m - 1u) * p.a_m;
    let row4 = min(m0 + 32u + l, p.m - 1u) * p.a_m;
    let row5 = min(m0 + 40u + l, p.m - 1u) * p.a_m;
    let row6 = min(m0 + 48u + l, p.m - 1u) * p.a_m;
    let row7 = min(m0 + 56u + l, p.m - 1u) * p.a_m;
    // A's offset of k (added to each row's), kept without division as in `gemm`
    let a_start = a_k_offset(k_begin);
    var k_off = a_start.x;
    var inner = a_start.y;
    // the columns n0 .. n0 + 3 (left) and n0 + 4 .. n0 + 7 (right)
    let left = column_bases(n0);
    let right = column_bases(n0 + 4u);
    // B's offset of k: with B_KMAJOR moved on four k at a time within blocks of whole groups of
    // 4, else one k at a time (in blocks of blocks where B is a convolution's rows, shifted per
    // kernel column)
    var walk = k_walk_at(k_begin);
    var left0: array<vec4<f32>, 8>;
    var right0: array<vec4<f32>, 8>;
    var left1: array<vec4<f32>, 8>;
    var right1: array<vec4<f32>, 8>;
    var left2: array<vec4<f32>, 8>;
    var right2: array<vec4<f32>, 8>;
    var left3: array<vec4<f32>, 8>;
    var right3: array<vec4<f32>, 8>;
    var left4: array<vec4<f32>, 8>;
    var right4: array<vec4<f32>, 8>;
    var left5: array<vec4<f32>, 8>;
    var right5: array<vec4<f32>, 8>;
    var left6: array<vec4<f32>, 8>;
    var right6: array<vec4<f32>, 8>;
    var left7: array<vec4<f32>, 8>;
    var right7: array<vec4<f32>, 8>;
    var a0: vec4<f32>;
    var a1: vec4<f32>;
    var a2: vec4<f32>;
    var a3: vec4<f32>;
    var a4: vec4<f32>;
    var a5: vec4<f32>;
    var a6: vec4<f32>;
    var a7: vec4<f32>;
    let k_whole = k_begin + (k_end - k_begin) / 4u * 4u;
    for (var k0 = k_begin; k0 < k_whole; k0 += 4u) {
        a0 = load_a4(row0 + k_off);
        a1 = load_a4(row1 + k_off);
        a2 = load_a4(row2 + k_off);
        a3 = load_a4(row3 + k_off);
        if (GROUPS > 4u) {
            a4 = load_a4(row4 + k_off);
            a5 = load_a4(row5 + k_off);
            a6 = load_a4(row6 + k_off);
            a7 = load_a4(row7 + k_off);
        }
        var rows = vec4<u32>(0u);
        if (!B_KMAJOR) { rows = k_walk_four(&walk); }
        let b_left = load_b_tall(left, walk.off, rows);
        accumulate8x4(&left0, a0, b_left);
        accumulate8x4(&left1, a1, b_left);
        accumulate8x4(&left2, a2, b_left);
        accumulate8x4(&left3, a3, b_left);
        if (GROUPS > 4u) {
            accumulate8x4(&left4, a4, b_left);
            accumulate8x4(&left5, a5, b_left);
            accumulate8x4(&left6, a6, b_left);
            accumulate8x4(&left7, a7, b_left);
        }
        let b_right = load_b_tall(right, walk.off, rows);
        accumulate8x4(&right0, a0, b_right);
        accumulate8x4(&right1, a1, b_right);
        accumulate8x4(&right2, a2, b_right);
        accumulate8x4(&right3, a3, b_right);
        if (GROUPS > 4u) {
            accumulate8x4(&right4, a4, b_right);
            accumulate8x4(&right5, a5, b_right);
            accumulate8x4(&right6, a6, b_right);
            accumulate8x4(&right7, a7, b_right);
        }
        next_four_k_of_a(&inner, &k_off);
        if (B_KMAJOR) { walk = k_walk_four_in_blocks(walk); }
    }
    // the rest lies inside one block of A along k (blocks hold whole groups of 4), and with
    // B_KMAJOR of B
    for (var k = k_whole; k < k_end; k++) {
        let off = walk.off;
        walk = k_walk_next(walk);
        let b_left = load_b4(left, off);
        let b_right = load_b4(right, off);
        accumulate8(&left0, a_at(row0 + k_off), b_left);
        accumulate8(&right0, a_at(row0 + k_off), b_right);
        accumulate8(&left1, a_at(row1 + k_off), b_left);
        accumulate8(&right1, a_at(row1 + k_off), b_right);
        accumulate8(&left2, a_at(row2 + k_off), b_left);
        accumulate8(&right2, a_at(row2 + k_off), b_right);
        accumulate8(&left3, a_at(row3 + k_off), b_left);
        accumulate8(&right3, a_at(row3 + k_off), b_right);
        if (GROUPS > 4u) {
            accumulate8(&left4, a_at(row4 + k_off), b_left);
            accumulate8(&right4, a_at(row4 + k_off), b_right);
            accumulate8(&left5, a_at(row5 + k_off), b_left);
            accumulate8(&right5, a_at(row5 + k_off), b_right);
            accumulate8(&left6, a_at(row6 + k_off), b_left);
            accumulate8(&right6, a_at(row6 + k_off), b_right);
            accumulate8(&left7, a_at(row7 + k_off), b_left);
            accumulate8(&right7, a_at(row7 + k_off), b_right);
        }
        k_off += p.a_k;
    }
    // where the left and right columns lie in C, found once for all rows
    let left_columns = c_columns(n0);
    let right_columns = c_columns(n0 + 4u);
    store8(left0, m0 + 0u, n0, left_columns, chunk);
    store8(right0, m0 + 0u, n0 + 4u, right_columns, chunk);
    store8(left1, m0 + 8u, n0, left_columns, chunk);
    store8(right1, m0 + 8u, n0 + 4u, right_columns, chunk);
    store8(left2, m0 + 16u, n0, left_columns, chunk);
    store8(right2, m0 + 16u, n0 + 4u, right_columns, chunk);
    store8(left3, m0 + 24u, n0, left_columns, chunk);
    store8(right3, m0 + 24u, n0 + 4u, right_columns, chunk);
    if (GROUPS > 4u) {
        store8(left4, m0 + 32u, n0, left_columns, chunk);
        store8(right4, m0 + 32u, n0 + 4u, right_columns, chunk);
        store8(left5, m0 + 40u, n0, left_columns, chunk);
        store8(right5, m0 + 40u, n0 + 4u, right_columns, chunk);
        store8(left6, m0 + 48u, n0, left_columns, chunk);
        store8(right6, m0 + 48u, n0 + 4u, right_columns, chunk);
        store8(left7, m0 + 56u, n0, left_columns, chunk);
        store8(right7, m0 + 56u, n0 + 4u, right_columns, chunk);
    }
}

// The running argmin of rows n0 .. n0 + 3 (dist0, code0) and n0 + 4 .. n0 + 7 (dist1, code1).
struct Best {
    dist0: vec4<f32>,
    dist1: vec4<f32>,
    code0: vec4<u32>,
    code1: vec4<u32>,
}

// Codes code0 .. code0 + 7 (those before code_end) with their dot products with rows n0 .. n0 + 3
// (`left`) and n0 + 4 .. n0 + 7 (`right`) into the rows' running argmin, in the codes' order and
// by a strict comparison, so that ties keep the lowest code.
fn take_best(left: array<vec4<f32>, 8>, right: array<vec4<f32>, 8>, code0: u32, code_end: u32,
             best: ptr<function, Best>) {
    for (var r = 0u; r < 8u; r++) {
        let code = code0 + r;
        if (code >= code_end) { return; }
        let norm = bias[code];
        let dist0 = norm - 2.0 * left[r];
        let dist1 = norm - 2.0 * right[r];
        let win0 = dist0 < (*best).dist0;
        let win1 = dist1 < (*best).dist1;
        (*best).dist0 = select((*best).dist0, dist0, win0);
        (*best).dist1 = select((*best).dist1, dist1, win1);
        (*best).code0 = select((*best).code0, vec4<u32>(code), win0);
        (*best).code1 = select((*best).code1, vec4<u32>(code), win1);
    }
}

// Dimensions d .. d + 3 of the code at `off` (d a multiple of 4): one texel of the codebook's copy
// where the codes are whole texels.
fn code_dims4(off: u32) -> vec4<f32> {
    if (TEX && p.k % 4u == 0u) { return texel(a_tex, off >> 2u); }
    return vec4<f32>(a_at(off), a_at(off + 1u), a_at(off + 2u), a_at(off + 3u));
}

// 64 codes x 8 rows per invocation and step, as gemm_tall's rows x columns: lane r of group g
// loads code c0 + 8 g + r and broadcasts it, so that each block of z serves 64 codes.
@compute @workgroup_size(WG)
fn nearest(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(subgroup_invocation_id) lane: u32) {
    let chunk = wid.z;
    let n0 = (wid.x * WG + lid.x) * 8u;
    let code_begin = chunk * p.k_chunk;
    let code_end = min(p.m, code_begin + p.k_chunk);
    let left = vec4<u32>(column_base(n0), 0u, 0u, 0u);
    let right = vec4<u32>(column_base(n0 + 4u), 0u, 0u, 0u);
    let none = vec4<u32>(0xffffffffu);
    var best = Best(vec4<f32>(3.0e38), vec4<f32>(3.0e38), none, none);
    let d_whole = p.k / 4u * 4u;
    // lanes past row 7 of a group load a code too (never broadcast)
    let l = min(lane, 7u);
    // lanes past the chunk's last code load that code again (their products are never used)
    let last = code_end - 1u;
    for (var c0 = code_begin; c0 < code_end; c0 += 64u) {
        let row0 = min(c0 + l, last) * p.a_m;
        let row1 = min(c0 + 8u + l, last) * p.a_m;
        let row2 = min(c0 + 16u + l, last) * p.a_m;
        let row3 = min(c0 + 24u + l, last) * p.a_m;
        let row4 = min(c0 + 32u + l, last) * p.a_m;
        let row5 = min(c0 + 40u + l, last) * p.a_m;
        let row6 = min(c0 + 48u + l, last) * p.a_m;
        let row7 = min(c0 + 56u + l, last) * p.a_m;
        var left0: array<vec4<f32>, 8>;
        var right0: array<vec4<f32>, 8>;
        var left1: array<vec4<f32>, 8>;
        var right1: array<vec4<f32>, 8>;
        var left2: array<vec4<f32>, 8>;
        var right2: array<vec4<f32>, 8>;
        var left3: array<vec4<f32>, 8>;
        var right3: array<vec4<f32>, 8>;
        var left4: array<vec4<f32>, 8>;
        var right4: array<vec4<f32>, 8>;
        var left5: array<vec4<f32>, 8>;
        var right5: array<vec4<f32>, 8>;
        var left6: array<vec4<f32>, 8>;
        var right6: array<vec4<f32>, 8>;
        var left7: array<vec4<f32>, 8>;
        var right7: array<vec4<f32>, 8>;
        for (var d0 = 0u; d0 < d_whole; d0 += 4u) {
            let a0 = code_dims4(row0 + d0);
            let a1 = code_dims4(row1 + d0);
            let a2 = code_dims4(row2 + d0);
            let a3 = code_dims4(row3 + d0);
            let a4 = code_dims4(row4 + d0);
            let a5 = code_dims4(row5 + d0);
            let a6 = code_dims4(row6 + d0);
            let a7 = code_dims4(row7 + d0);
            let b_left = load_b_block(left, d0 * p.b_k);
            accumulate8x4(&left0, a0, b_left);
            accumulate8x4(&left1, a1, b_left);
            accumulate8x4(&left2, a2, b_left);
            accumulate8x4(&left3, a3, b_left);
            accumulate8x4(&left4, a4, b_left);
            accumulate8x4(&left5, a5, b_left);
            accumulate8x4(&left6, a6, b_left);
            accumulate8x4(&left7, a7, b_left);
            let b_right = load_b_block(right, d0 * p.b_k);
            accumulate8x4(&right0, a0, b_right);
            accumulate8x4(&right1, a1, b_right);
            accumulate8x4(&right2, a2, b_right);
            accumulate8x4(&right3, a3, b_right);
            accumulate8x4(&right4, a4, b_right);
            accumulate8x4(&right5, a5, b_right);
            accumulate8x4(&right6, a6, b_right);
            accumulate8x4(&right7, a7, b_right);
        }
        for (var d = d_whole; d < p.k; d++) {
            let b_left = load_b4(left, d * p.b_k);
            let b_right = load_b4(right, d * p.b_k);
            accumulate8(&left0, a_at(row0 + d), b_left);
            accumulate8(&right0, a_at(row0 + d), b_right);
            accumulate8(&left1, a_at(row1 + d), b_left);
            accumulate8(&right1, a_at(row1 + d), b_right);
            accumulate8(&left2, a_at(row2 + d), b_left);
            accumulate8(&right2, a_at(row2 + d), b_right);
            accumulate8(&left3, a_at(row3 + d), b_left);
            accumulate8(&right3, a_at(row3 + d), b_right);
            accumulate8(&left4, a_at(row4 + d), b_left);
            accumulate8(&right4, a_at(row4 + d), b_right);
            accumulate8(&left5, a_at(row5 + d), b_left);
            accumulate8(&right5, a_at(row5 + d), b_right);
            accumulate8(&left6, a_at(row6 + d), b_left);
            accumulate8(&right6, a_at(row6 + d), b_right);
            accumulate8(&left7, a_at(row7 + d), b_left);
            accumulate8(&right7, a_at(row7 + d), b_right);
        }
        take_best(left0, right0, c0, code_end, &best);
        take_best(left1, right1, c0 + 8u, code_end, &best);
        take_best(left2, right2, c0 + 16u, code_end, &best);
        take_best(left3, right3, c0 + 24u, code_end, &best);
        take_best(left4, right4, c0 + 32u, code_end, &best);
        take_best(left5, right5, c0 + 40u, code_end, &best);
        take_best(left6, right6, c0 + 48u, code_end, &best);
        take_best(left7, right7, c0 + 56u, code_end, &best);
    }
    for (var j = 0u; j < 8u; j++) {
        let n = n0 + j;
        if (n >= p.n) { break; }
        var code = best.code0[j % 4u];
        var dist = best.dist0[j % 4u];
        if (j >= 4u) {
            code = best.code1[j % 4u];
            dist = best.dist1[j % 4u];
        }
        // a row whose distances are all NaN keeps the chunk's first code
        c[chunk * p.n + n] = f32(select(code, code_begin, code == 0xffffffffu));
        c_dist[chunk * p.n + n] = dist;
    }
}

fn kept(tap: u32) -> bool {
    if (!MASKED) { return true; }
    if (tap < 32u) { return ((p.mask_lo >> tap) & 1u) == 1u; }
    return ((p.mask_hi >> (tap - 32u)) & 1u) == 1u;
}

// x at kernel position (ky, kx) of channel ci for the output position whose top-left input is
// (y0, x0) in image plane `image` (zero in the padding and at masked positions).
fn tap_value(image: u32, ci: u32, y0: i32, x0: i32, ky: u32, kx: u32) -> f32 {
    let iy = y0 + i32(ky);
    let ix = x0 + i32(kx);
    let inside = iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w) && kept(ky * p.k_w + kx);
    // read unconditionally (at the plane's first element outside it), so that no lane branches
    let at = select(0u, u32(iy) * p.in_w + u32(ix), inside);
    return select(0.0, a_at((image * p.cin + ci) * p.in_h * p.in_w + at), inside);
}

// The index in x's copy of element x of row iy of channel ci of an image, row 0 standing in for a
// row outside x (whose taps are masked): before the copy only where the first taps of the first
// row are in the padding.
fn row_element(image: u32, ci: u32, iy: i32, x: i32) -> i32 {
    let plane = i32((image * p.cin + ci) * p.in_h * p.in_w);
    return plane + select(0, iy, iy >= 0 && iy < i32(p.in_h)) * i32(p.in_w) + x;
}

// Texel t of x's copy, t clamped to the copy: the elements it is clamped for lie in the padding.
fn x_texel(t: i32) -> vec4<f32> {
    let last = i32((p.batch * p.cin * p.in_h * p.in_w - 1u) >> 2u);
    return texel(a_tex, u32(clamp(t, 0, last)));
}

// With ROW_TEXELS at stride 1 and a kernel wider than 5: x at kernel position (ky, kx) of channel
// ci for the four columns of one output row whose first has top-left input (y0, x0). Their taps
// are four consecutive elements of one input row, so they are read as the two texels of the copy
// that hold them and shifted into place, instead of as one texel each (zero in the padding and at
// masked positions).
fn tap_values_in_row(image: u32, ci: u32, y0: i32, x0: i32, ky: u32, kx: u32) -> vec4<f32> {
    let iy = y0 + i32(ky);
    let xs = vec4<i32>(x0 + i32(kx)) + vec4<i32>(0, 1, 2, 3);
    let inside = taps_inside(iy, ky, kx, xs);
    // the first tap's element, its texel (rounded down) and the next
    let first = row_element(image, ci, iy, xs.x);
    let lo = x_texel(first >> 2u);
    let hi = x_texel((first >> 2u) + 1);
    return select(vec4<f32>(0.0), shifted(lo, hi, u32(first & 3)), inside);
}

// With ROW_TEXELS at stride 2: the window of x's row that the four columns of one output row,
// whose first has top-left input (y0, x0), read from kernel position (ky, kx) to the end of the
// kernel row: 13 consecutive elements from the first column's tap at (ky, kx), as w[0] .. w[3]
// (w[3].x the last; the rest of w[3] is not looked at). The host takes this path where those taps
// lie within them: kW - 1 + 6 <= 12. The four texels that hold them are fetched and shifted so
// that the first tap comes first. Elements outside x's row are not zeroed here.
fn row_window(image: u32, ci: u32, y0: i32, x0: i32, ky: u32, kx: u32) -> array<vec4<f32>, 4> {
    let first = row_element(image, ci, y0 + i32(ky), x0 + i32(kx));
    let t = first >> 2u;
    let r0 = x_texel(t);
    let r1 = x_texel(t + 1);
    let r2 = x_texel(t + 2);
    let r3 = x_texel(t + 3);
    let shift = u32(first & 3);
    return array<vec4<f32>, 4>(shifted(r0, r1, shift), shifted(r1, r2, shift), shifted(r2, r3, shift), shifted(r3, vec4<f32>(0.0), shift));
}

// Elements `shift` .. `shift` + 3 (shift < 4) of the eight in lo, hi.
fn shifted(lo: vec4<f32>, hi: vec4<f32>, shift: u32) -> vec4<f32> {
    let one = vec4<f32>(lo.yzw, hi.x);
    let two = vec4<f32>(lo.zw, hi.xy);
    let three = vec4<f32>(lo.w, hi.xyz);
    return select(select(lo, one, shift == 1u), select(two, three, shift == 3u), shift >= 2u);
}

// Which of the four columns' taps at kernel position (ky, kx), in input row iy at positions xs,
// lie inside x and are kept.
fn taps_inside(iy: i32, ky: u32, kx: u32, xs: vec4<i32>) -> vec4<bool> {
    let row_inside = iy >= 0 && iy < i32(p.in_h) && kept(ky * p.k_w + kx);
    return vec4<bool>(row_inside) & (xs >= vec4<i32>(0)) & (xs < vec4<i32>(i32(p.in_w)));
}

// (ci, ky) moved on to the next kernel row.
fn next_kernel_row(ci: ptr<function, u32>, ky: ptr<function, u32>) {
    *ky += 1u;
    if (*ky == p.k_h) {
        *ky = 0u;
        *ci += 1u;
    }
}

// The input position of column n = (b, oy, ox): (b, y0, x0) of its kernel's top-left tap.
struct Column {
    image: u32,
    y0: i32,
    x0: i32,
}

fn column_at(n: u32) -> Column {
    let plane = p.out_h * p.out_w;
    let oy = (n % plane) / p.out_w;
    let ox = n % p.out_w;
    return Column(n / plane, i32(oy * p.stride_h) - bitcast<i32>(p.pad_h), i32(ox * p.stride_w) - bitcast<i32>(p.pad_w));
}

// Without TRANSPOSED: one invocation per 4 columns n .. n + 3 and block of 16 rows j (workgroup
// y), each row stored as one vec4 (columns past N get zeros), cols laid out as the product that
// reads them reads B: element (j, n) at (n / b_inner) * b_outer + n % b_inner + j * b_k (all
// multiples of 4; no blocks along j). With TRANSPOSED: one invocation per column n and the same
// block of rows, 4 rows per vec4 (rows past cin x kH x kW get zeros; `ld` is then a multiple of 4
// past them).
@compute @workgroup_size(64)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let columns = p.batch * p.out_h * p.out_w;
    let rows = p.cin * p.k_h * p.k_w;
    var n = gid.x;
    if (!TRANSPOSED) { n = gid.x * 4u; }
    if (n >= columns) { return; }
    let j_begin = wid.y * 16u;
    let taps = p.k_h * p.k_w;
    // (ci, ky, kx) of the first row, then counted up
    var ci = j_begin / taps;
    var ky = (j_begin / p.k_w) % p.k_h;
    var kx = j_begin % p.k_w;
    if (TRANSPOSED) {
        let col = column_at(n);
        let j_end = min((rows + 3u) / 4u * 4u, j_begin + 16u);
        for (var j = j_begin; j < j_end; j += 4u) {
            var v = vec4<f32>(0.0);
            for (var e = 0u; e < 4u; e++) {
                if (j + e < rows) {
                    v[e] = tap_value(col.image, ci, col.y0, col.x0, ky, kx);
                }
                kx++;
                if (kx == p.k_w) {
                    kx = 0u;
                    next_kernel_row(&ci, &ky);
                }
            }
            cols4[(n * p.ld + j) / 4u] = v;
        }
        return;
    }
    // the columns past N read column n (their values are replaced by zeros)
    let c0 = column_at(n);
    // row 0 of the four columns in cols, laid out as the product reads B
    let column0 = column_base(n);
    let live = vec4<bool>(true, n + 1u < columns, n + 2u < columns, n + 3u < columns);
    let j_end = min(rows, j_begin + 16u);
    if (ROW_TEXELS && TEX && p.stride_w == 1u && p.k_w <= 5u) {
        // a kernel row at a time: the three texels that hold its taps fetched once; kernel
        // position kx takes elements q .. q + 3 of them (q the first tap's place in the first
        // texel plus the positions since, below 8 for kernels up to 5 wide)
        var j = j_begin;
        while (j < j_end) {
            let iy = c0.y0 + i32(ky);
            let first = row_element(c0.image, ci, iy, c0.x0 + i32(kx));
            let t = first >> 2u;
            let r0 = x_texel(t);
            let r1 = x_texel(t + 1);
            let r2 = x_texel(t + 2);
            var q = u32(first & 3);
            let row_end = min(j_end, j + p.k_w - kx);
            while (j < row_end) {
                let inside = taps_inside(iy, ky, kx, vec4<i32>(c0.x0 + i32(kx)) + vec4<i32>(0, 1, 2, 3));
                let upper = q >= 4u;
                let taps = shifted(select(r0, r1, upper), select(r1, r2, upper), q & 3u);
                cols4[(column0 + j * p.b_k) >> 2u] = select(vec4<f32>(0.0), taps, inside & live);
                q++;
                j++;
                kx++;
            }
            kx = 0u;
            next_kernel_row(&ci, &ky);
        }
        return;
    }
    if (ROW_TEXELS && TEX && p.stride_w == 2u) {
        // a kernel row at a time: its window of x's row fetched once, then moved on by one
        // element per kernel position; the four columns' taps are elements 0, 2, 4 and 6
        var j = j_begin;
        while (j < j_end) {
            var w = row_window(c0.image, ci, c0.y0, c0.x0, ky, kx);
            let iy = c0.y0 + i32(ky);
            let row_end = min(j_end, j + p.k_w - kx);
            while (j < row_end) {
                let inside = taps_inside(iy, ky, kx, vec4<i32>(c0.x0 + i32(kx)) + vec4<i32>(0, 2, 4, 6));
                let taps = vec4<f32>(w[0].xz, w[1].xz);
                cols4[(column0 + j * p.b_k) >> 2u] = select(vec4<f32>(0.0), taps, inside & live);
                w = array<vec4<f32>, 4>(vec4<f32>(w[0].yzw, w[1].x), vec4<f32>(w[1].yzw, w[2].x), vec4<f32>(w[2].yzw, w[3].x), w[3]);
                j++;
                kx++;
            }
            kx = 0u;
            next_kernel_row(&ci, &ky);
        }
        return;
    }
    let c1 = column_at(min(n + 1u, columns - 1u));
    let c2 = column_at(min(n + 2u, columns - 1u));
    let c3 = column_at(min(n + 3u, columns - 1u));
    for (var j = j_begin; j < j_end; j++) {
        var v = vec4<f32>(0.0);
        if (ROW_TEXELS && TEX) {
            v = tap_values_in_row(c0.image, ci, c0.y0, c0.x0, ky, kx);
        } else {
            v = vec4<f32>(
                tap_value(c0.image, ci, c0.y0, c0.x0, ky, kx),
                tap_value(c1.image, ci, c1.y0, c1.x0, ky, kx),
                tap_value(c2.image, ci, c2.y0, c2.x0, ky, kx),
                tap_value(c3.image, ci, c3.y0, c3.x0, ky, kx),
            );
        }
        cols4[(column0 + j * p.b_k) >> 2u] = select(vec4<f32>(0.0), v, live);
        kx++;
        if (kx == p.k_w) {
            kx = 0u;
            next_kernel_row(&ci, &ky);
        }
    }
}

// out[ci, co, t] = a[co, ci, k - 1 - t] for t < k (`p.k`, the kept kernel positions, which come
// first in a's kH x kW) and a weight of `m` output channels: with every position, the weight
// flipped along both kernel axes, which is the weight of the convolution of dy that gives a stride-1
// convolution's input gradient; with a window of first rows, that window flipped. One invocation
// per (ci, co), whose k taps lie together in both: the channels are found once per pair (the
// software driver divides lane by lane).
@compute @workgroup_size(256)
fn flipped_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pair = gid.x + gid.y * nwg.x * 256u;
    if (pair >= p.cin * p.m) { return; }
    let co = pair % p.m;
    let ci = pair / p.m;
    let last = (co * p.cin + ci) * p.k_h * p.k_w + p.k - 1u;
    for (var tap = 0u; tap < p.k; tap++) {
        c[pair * p.k + tap] = a[last - tap];
    }
}

// Along one axis of col2im: kernel positions k = r + s t reach output position q - t. For t = 0
// and 1: the kernel position, the output position (wrapped where t > q) and whether it reaches.
struct Reach {
    k: vec2<u32>,
    o: vec2<u32>,
    ok: vec2<bool>,
}

fn reach(r: u32, q: u32, k_len: u32, s: u32, out: u32) -> Reach {
    let t = vec2<u32>(0u, 1u);
    let k = vec2<u32>(r) + t * s;
    let o = vec2<u32>(q) - t;
    return Reach(k, o, k < vec2<u32>(k_len) & t <= vec2<u32>(q) & o < vec2<u32>(out));
}

// One invocation per input position (b, iy, ix), looping over the channels and the kernel
// positions that reach it. `b` holds the columns [rows, ld].
@compute @workgroup_size(64)
fn col2im(@builtin(global_invocation_id) gid: vec3<u32>) {
    let in_plane = p.in_h * p.in_w;
    let e = gid.x;
    if (e >= p.batch * in_plane) { return; }
    let b_i = e / in_plane;
    let iy = (e % in_plane) / p.in_w;
    let ix = e % p.in_w;
    let plane = p.out_h * p.out_w;
    let taps = p.k_h * p.k_w;
    // kernel rows ky = ry + s * t reach output row oy = qy - t; the same along x
    let ry = (iy + p.pad_h) % p.stride_h;
    let qy = (iy + p.pad_h) / p.stride_h;
    let rx = (ix + p.pad_w) % p.stride_w;
    let qx = (ix + p.pad_w) / p.stride_w;
    // kernels at most twice the stride along both axes (the 4x4 stride-2 layers): two kernel rows
    // and two kernel columns at most reach (iy, ix); the offsets of their four terms in the
    // columns are found once for all channels, in the order of the loops below
    let two_by_two = p.k_h <= 2u * p.stride_h && p.k_w <= 2u * p.stride_w;
    var offsets = vec4<u32>(0u);
    var reached = vec4<bool>(false);
    if (two_by_two) {
        let y = reach(ry, qy, p.k_h, p.stride_h, p.out_h);
        let x = reach(rx, qx, p.k_w, p.stride_w, p.out_w);
        let tap = y.k.xxyy * p.k_w + x.k.xyxy;
        let kept_taps = vec4<bool>(kept(tap.x), kept(tap.y), kept(tap.z), kept(tap.w));
        reached = y.ok.xxyy & x.ok.xyxy & kept_taps;
        let n = vec4<u32>(b_i * plane) + y.o.xxyy * p.out_w + x.o.xyxy;
        offsets = select(vec4<u32>(0u), tap * p.ld + n, reached);
    }
    for (var ci = 0u; ci < p.cin; ci++) {
        var sum = 0.0;
        if (two_by_two) {
            // a term that does not reach is read at the channel's first element and adds zero
            let term_at = offsets + vec4<u32>(ci * taps * p.ld);
            let read = vec4<f32>(b_at(term_at.x), b_at(term_at.y), b_at(term_at.z), b_at(term_at.w));
            let terms = select(vec4<f32>(0.0), read, reached);
            sum += terms.x;
            sum += terms.y;
            sum += terms.z;
            sum += terms.w;
        } else {
            var ky = ry;
            for (var ty = 0u; ty <= qy && ky < p.k_h; ty++) {
                let oy = qy - ty;
                if (oy < p.out_h) {
                    var kx = rx;
                    for (var tx = 0u; tx <= qx && kx < p.k_w; tx++) {
                        let ox = qx - tx;
                        let tap = ky * p.k_w + kx;
                        if (ox < p.out_w && kept(tap)) {
                            sum += b_at((ci * taps + tap) * p.ld + b_i * plane + oy * p.out_w + ox);
                        }
                        kx += p.stride_w;
                    }
                }
                ky += p.stride_h;
            }
        }
        if (BIAS == 1u) { sum += bias[ci]; }
        let at = ((b_i * p.cin + ci) * p.in_h + iy) * p.in_w + ix;
        if (RESIDUAL) { sum = residual[at >> 2u][at & 3u] + sum; }
        if (p.relu == 1u) { sum = max(sum, 0.0); }
        if (p.gate == 1u) { sum = select(0.0, sum, gate[at >> 2u][at & 3u] > 0.0); }
        c[at] = sum;
    }
}
