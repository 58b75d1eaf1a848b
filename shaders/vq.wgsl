// Vector quantization: nearest codebook entry for every encoder vector, and code-usage statistics
// (the chosen entries are gathered by gather.wgsl). Encoder vectors are read straight from NCHW: row n = (b, s) with
// s < hw = H*W has elements z[(b * D + d) * hw + s]. Code indices are stored as f32 (exact below 2^24).

struct Params {
    n: u32,       // rows (batch * H * W)
    k: u32,       // codebook size
    d: u32,       // code dimension
    hw: u32,      // H * W
    k_chunk: u32, // nearest: codes per workgroup z (a multiple of 64); nearest_merge: number of chunks
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> z: array<f32>;          // NCHW encoder output
@group(0) @binding(2) var<storage, read> codebook: array<f32>;   // [K, D]
@group(0) @binding(3) var<storage, read> norms: array<f32>;      // [K] squared norms of the codebook rows
@group(0) @binding(4) var<storage, read_write> out: array<f32>;  // codes [N], norms or stats
@group(0) @binding(5) var<storage, read_write> out_dist: array<f32>; // nearest: best distance per (chunk, row)

fn z_at(row: u32, d: u32) -> f32 {
    return z[((row / p.hw) * p.d + d) * p.hw + row % p.hw];
}

// out[k] = sum_d codebook[k, d]^2, computed once per step
@compute @workgroup_size(256)
fn code_norms(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * 256u;
    if (k >= p.k) { return; }
    var s = 0.0;
    for (var d = 0u; d < p.d; d = d + 1u) {
        let v = codebook[k * p.d + d];
        s = s + v * v;
    }
    out[k] = s;
}

// Fused distance + argmin over one chunk of the codebook: for chunk c = workgroup z, codes
// [c * k_chunk, (c + 1) * k_chunk), out[c * N + n] = argmin_k ||e_k||^2 - 2 z_n . e_k (= argmin ||z_n - e_k||^2)
// with ties to the lowest k, and out_dist[c * N + n] its distance. `nearest`: a workgroup owns 64
// rows and walks its chunk in tiles of 64 codes; z and code slices of 16 dims go through workgroup
// memory, each thread computes a 4 x 4 block of dot products (four adjacent rows by four adjacent
// codes, read from the tiles as one vec4 each) and keeps the running minimum of its 4 rows in
// registers. `nearest_wide`, for large searches: 128 rows, tiles of 128 codes, slices of 8 dims, an
// 8 x 8 block per thread (two fours of rows 64 apart by two fours of codes 64 apart). Both add each
// dot product over the dims in increasing order and keep the lowest code on ties, so they give the
// same codes. The N x K distances are never stored. Chunks bound the work of one invocation (the
// software Vulkan driver stops loop nests after 65535 iterations) and spread small batches over
// more workgroups.
var<workgroup> z_tile: array<vec4<f32>, 256>; // [dims][rows], as fours of rows
// [dims][codes + 4], as fours: the 4 extra floats per dimension spread the stores of neighbouring
// threads (neighbouring dims) over the memory banks; 272 = 16 * (64 / 4 + 1) >= 8 * (128 / 4 + 1)
var<workgroup> e_tile: array<vec4<f32>, 272>;
// each thread's best code per row, [64 rows][16 thread columns]; their distances go into z_tile,
// which is free by then (so that the kernel stays within 16 KiB of workgroup memory)
var<workgroup> cand_code: array<u32, 1024>;

// (dist a, code a) before (dist b, code b): smaller distance, then smaller index
fn better(da: f32, ca: u32, db: f32, cb: u32) -> bool {
    return da < db || (da == db && ca < cb);
}

// Loads thread t's four values of z (its row `z_at.x`, which starts at `z_at.y`; dims
// t / rows + 256 r / rows) and four of the codebook (codes t / depth + 256 r / depth, dim
// t % depth) of the slice at codes `at.x`, dims `at.y`, for tiles of `rows` rows (and as many
// codes) by `depth` dims; zeros outside.
fn fetch_slice(at: vec2<u32>, k_end: u32, t: u32, z_at: vec2<u32>, rows: u32, depth: u32,
               z_next: ptr<function, vec4<f32>>, e_next: ptr<function, vec4<f32>>) {
    for (var r = 0u; r < 4u; r = r + 1u) {
        let e = t + r * 256u;
        // z: neighbouring threads take neighbouring rows (contiguous in NCHW)
        let dz = at.y + e / rows;
        var zv = 0.0;
        if (z_at.x < p.n && dz < p.d) { zv = z[z_at.y + dz * p.hw]; }
        (*z_next)[r] = zv;
        // codebook: neighbouring threads take neighbouring dims (contiguous rows)
        let code = at.x + e / depth;
        let de = at.y + e % depth;
        var ev = 0.0;
        if (code < k_end && de < p.d) { ev = codebook[code * p.d + de]; }
        (*e_next)[r] = ev;
    }
}

// Stores what `fetch_slice` loaded into the tiles.
fn store_slice(t: u32, rows: u32, depth: u32, z_next: vec4<f32>, e_next: vec4<f32>) {
    for (var r = 0u; r < 4u; r = r + 1u) {
        let e = t + r * 256u;
        z_tile[(e / rows) * (rows / 4u) + (t % rows) / 4u][t % 4u] = z_next[r];
        let code = e / depth;
        e_tile[(e % depth) * (rows / 4u + 1u) + code / 4u][code % 4u] = e_next[r];
    }
}

// The z row thread t loads, r0 + t % rows (neighbouring threads take neighbouring rows,
// contiguous in NCHW), and where that row starts.
fn z_row_at(r0: u32, t: u32, rows: u32) -> vec2<u32> {
    let row = r0 + t % rows;
    return vec2<u32>(row, ((row / p.hw) * p.d) * p.hw + row % p.hw);
}

// The next slice after codes `c0`, dims `d0`: the next dims of these codes, else the first dims of
// the next tile of `rows` codes.
fn next_slice(c0: u32, d0: u32, rows: u32, depth: u32) -> vec2<u32> {
    if (d0 + depth < p.d) { return vec2<u32>(c0, d0 + depth); }
    return vec2<u32>(c0 + rows, 0u);
}

// Running minimum of 4 rows over the 4 codes first_code + j (j < 4) whose dot products with the
// rows are acc[row][j]. Codes are visited in increasing order, so a strict comparison keeps the
// lowest index on ties.
fn keep_best(acc: array<vec4<f32>, 4>, first_code: u32, k_end: u32,
             best_dist: ptr<function, array<f32, 4>>, best_code: ptr<function, array<u32, 4>>) {
    for (var j = 0u; j < 4u; j = j + 1u) {
        let code = first_code + j;
        if (code < k_end) {
            let nk = norms[code];
            for (var i = 0u; i < 4u; i = i + 1u) {
                let dist = nk - 2.0 * acc[i][j];
                if (dist < (*best_dist)[i]) {
                    (*best_dist)[i] = dist;
                    (*best_code)[i] = code;
                }
            }
        }
    }
}

// Writes the best of the 16 thread columns' candidates of 64 rows r0 + i: each thread its
// candidates for rows 4 lid.y + i (i < 4), then thread t < 64 merges row t. All threads call it.
fn merge_rows(r0: u32, chunk: u32, k_begin: u32, t: u32, lid: vec3<u32>, best_dist: array<f32, 4>,
              best_code: array<u32, 4>) {
    for (var i = 0u; i < 4u; i = i + 1u) {
        let slot = (4u * lid.y + i) * 16u + lid.x;
        z_tile[slot / 4u][slot % 4u] = best_dist[i];
        cand_code[slot] = best_code[i];
    }
    workgroupBarrier();
    if (t < 64u) {
        var bd = z_tile[t * 4u].x;
        var bc = cand_code[t * 16u];
        for (var c = 1u; c < 16u; c = c + 1u) {
            let dv = z_tile[t * 4u + c / 4u][c % 4u];
            let cv = cand_code[t * 16u + c];
            if (better(dv, cv, bd, bc)) {
                bd = dv;
                bc = cv;
            }
        }
        if (r0 + t < p.n) {
            // a row whose distances are all NaN keeps the chunk's first code
            out[chunk * p.n + r0 + t] = f32(select(bc, k_begin, bc == 0xffffffffu));
            out_dist[chunk * p.n + r0 + t] = bd;
        }
    }
    workgroupBarrier();
}

// One dim of a 4 x 4 block: rows z (four of them) times codes e (four).
fn accumulate(acc: ptr<function, array<vec4<f32>, 4>>, z4: vec4<f32>, e4: vec4<f32>) {
    (*acc)[0] = (*acc)[0] + z4.x * e4;
    (*acc)[1] = (*acc)[1] + z4.y * e4;
    (*acc)[2] = (*acc)[2] + z4.z * e4;
    (*acc)[3] = (*acc)[3] + z4.w * e4;
}

// What a workgroup searches: rows from r0, chunk wid.z of the codebook, its codes [k_begin, k_end).
struct Search {
    r0: u32,
    chunk: u32,
    k_begin: u32,
    k_end: u32,
}

fn begin_search(wid: vec3<u32>, nwg: vec3<u32>, rows: u32) -> Search {
    var s: Search;
    s.r0 = (wid.x + wid.y * nwg.x) * rows;
    s.chunk = wid.z;
    s.k_begin = s.chunk * p.k_chunk;
    s.k_end = min(p.k, s.k_begin + p.k_chunk);
    return s;
}

fn no_best_yet(best_dist: ptr<function, array<f32, 4>>, best_code: ptr<function, array<u32, 4>>) {
    for (var i = 0u; i < 4u; i = i + 1u) {
        (*best_dist)[i] = 3.0e38;
        (*best_code)[i] = 0xffffffffu;
    }
}

@compute @workgroup_size(16, 16)
fn nearest(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let w = begin_search(wid, nwg, 64u);
    let k_end = w.k_end;
    var best_dist: array<f32, 4>;
    var best_code: array<u32, 4>;
    no_best_yet(&best_dist, &best_code);
    let z_at = z_row_at(w.r0, t, 64u);
    // the next slice is loaded into registers while the current one is multiplied
    var z_next: vec4<f32>;
    var e_next: vec4<f32>;
    fetch_slice(vec2<u32>(w.k_begin, 0u), k_end, t, z_at, 64u, 16u, &z_next, &e_next);
    for (var c0 = w.k_begin; c0 < k_end; c0 = c0 + 64u) {
        var acc: array<vec4<f32>, 4>; // [row][code]
        for (var d0 = 0u; d0 < p.d; d0 = d0 + 16u) {
            store_slice(t, 64u, 16u, z_next, e_next);
            workgroupBarrier();
            let next = next_slice(c0, d0, 64u, 16u);
            if (next.x < k_end) { fetch_slice(next, k_end, t, z_at, 64u, 16u, &z_next, &e_next); }
            for (var dd = 0u; dd < 16u; dd = dd + 1u) {
                accumulate(&acc, z_tile[dd * 16u + lid.y], e_tile[dd * 17u + lid.x]);
            }
            workgroupBarrier();
        }
        keep_best(acc, c0 + 4u * lid.x, k_end, &best_dist, &best_code);
    }
    merge_rows(w.r0, w.chunk, w.k_begin, t, lid, best_dist, best_code);
}

@compute @workgroup_size(16, 16)
fn nearest_wide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let w = begin_search(wid, nwg, 128u);
    let k_end = w.k_end;
    // rows 4 lid.y + i ("near") and 64 + 4 lid.y + i ("far"), codes 4 lid.x + j ("lo") and
    // 64 + 4 lid.x + j ("hi") of each tile
    var near_dist: array<f32, 4>;
    var near_code: array<u32, 4>;
    var far_dist: array<f32, 4>;
    var far_code: array<u32, 4>;
    no_best_yet(&near_dist, &near_code);
    no_best_yet(&far_dist, &far_code);
    let z_at = z_row_at(w.r0, t, 128u);
    var z_next: vec4<f32>;
    var e_next: vec4<f32>;
    fetch_slice(vec2<u32>(w.k_begin, 0u), k_end, t, z_at, 128u, 8u, &z_next, &e_next);
    for (var c0 = w.k_begin; c0 < k_end; c0 = c0 + 128u) {
        var near_lo: array<vec4<f32>, 4>; // [row][code]
        var near_hi: array<vec4<f32>, 4>;
        var far_lo: array<vec4<f32>, 4>;
        var far_hi: array<vec4<f32>, 4>;
        for (var d0 = 0u; d0 < p.d; d0 = d0 + 8u) {
            store_slice(t, 128u, 8u, z_next, e_next);
            workgroupBarrier();
            let next = next_slice(c0, d0, 128u, 8u);
            if (next.x < k_end) { fetch_slice(next, k_end, t, z_at, 128u, 8u, &z_next, &e_next); }
            for (var dd = 0u; dd < 8u; dd = dd + 1u) {
                let zn = z_tile[dd * 32u + lid.y];
                let zf = z_tile[dd * 32u + 16u + lid.y];
                let el = e_tile[dd * 33u + lid.x];
                let eh = e_tile[dd * 33u + 16u + lid.x];
                accumulate(&near_lo, zn, el);
                accumulate(&near_hi, zn, eh);
                accumulate(&far_lo, zf, el);
                accumulate(&far_hi, zf, eh);
            }
            workgroupBarrier();
        }
        keep_best(near_lo, c0 + 4u * lid.x, k_end, &near_dist, &near_code);
        keep_best(near_hi, c0 + 64u + 4u * lid.x, k_end, &near_dist, &near_code);
        keep_best(far_lo, c0 + 4u * lid.x, k_end, &far_dist, &far_code);
        keep_best(far_hi, c0 + 64u + 4u * lid.x, k_end, &far_dist, &far_code);
    }
    merge_rows(w.r0, w.chunk, w.k_begin, t, lid, near_dist, near_code);
    merge_rows(w.r0 + 64u, w.chunk, w.k_begin, t, lid, far_dist, far_code);
}

// codes[n] = the best of the per-chunk candidates (z holds the candidate codes, norms their distances,
// k_chunk the number of chunks), compared in chunk order so ties keep the lowest index
@compute @workgroup_size(256)
fn nearest_merge(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * 256u;
    if (row >= p.n) { return; }
    var bd = norms[row];
    var bc = u32(z[row]);
    for (var c = 1u; c < p.k_chunk; c = c + 1u) {
        let dv = norms[c * p.n + row];
        let cv = u32(z[c * p.n + row]);
        if (better(dv, cv, bd, bc)) {
            bd = dv;
            bc = cv;
        }
    }
    out[row] = f32(bc);
}

// The plain version: one thread per row, every distance straight from global memory. Kept as the
// baseline of `vqgpu bench quantizer`. On the software Vulkan driver (llvmpipe) it is exact only while
// K * (D + 2) stays below its 65535-iteration loop limit.
@compute @workgroup_size(256)
fn nearest_naive(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * 256u;
    if (row >= p.n) { return; }
    var bd = 3.0e38;
    var bc = 0u;
    for (var k = 0u; k < p.k; k = k + 1u) {
        var dot = 0.0;
        for (var d = 0u; d < p.d; d = d + 1u) {
            dot = dot + z_at(row, d) * codebook[k * p.d + d];
        }
        let dist = norms[k] - 2.0 * dot;
        if (dist < bd) {
            bd = dist;
            bc = k;
        }
    }
    out[row] = f32(bc);
}

// From per-code counts (`z` holds them here, K values summing to N):
// out[0] = perplexity exp(-sum p log p), out[1] = share of codes used. One workgroup, fixed order
// (`workgroup_sum` of collective.wgsl or collective_subgroups.wgsl, which the host appends).
@compute @workgroup_size(256)
fn code_stats(@builtin(local_invocation_index) t: u32) {
    let terms = code_terms(t);
    let total_entropy = workgroup_sum(terms.x, t);
    workgroupBarrier();
    let total_used = workgroup_sum(terms.y, t);
    if (t == 0u) {
        out[0] = exp(total_entropy);
        out[1] = total_used / f32(p.k);
    }
}

// Thread t's part of `code_stats`: (entropy, codes used) over codes t, t + 256, ...
fn code_terms(t: u32) -> vec2<f32> {
    var entropy = 0.0;
    var used = 0.0;
    for (var k = t; k < p.k; k = k + 256u) {
        let c = z[k];
        if (c > 0.0) {
            let q = c / f32(p.n);
            entropy = entropy - q * log(q);
            used = used + 1.0;
        }
    }
    return vec2<f32>(entropy, used);
}

// `code_stats` in one invocation, for the CPU set (where each of the tree's barriers switches
// between the 256 threads' contexts, which cost far more than these sums): the same 256 parts,
// added pairwise in the same order as `workgroup_sum`, so the same bits. The host uses it while
// K stays under the software driver's loop limit.
@compute @workgroup_size(1)
fn code_stats_serial() {
    var entropy: array<f32, 256>;
    var used: array<f32, 256>;
    for (var t = 0u; t < 256u; t = t + 1u) {
        let terms = code_terms(t);
        entropy[t] = terms.x;
        used[t] = terms.y;
    }
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        for (var t = 0u; t < stride; t = t + 1u) {
            entropy[t] = entropy[t] + entropy[t + stride];
            used[t] = used[t] + used[t + stride];
        }
    }
    out[0] = exp(entropy[0]);
    out[1] = used[0] / f32(p.k);
}
