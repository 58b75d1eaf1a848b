//! vq.wgsl and ema.wgsl against plain f64 references: nearest code (ties, K and D off the tiles,
//! K = 1, N = 1), EMA updates over several steps, dead-code restarts, the straight-through
//! estimator and the usage statistics (gather.wgsl, which gives the per-code sums, is in
//! `tests/gather.rs`).

mod common;
use common::*;
use vqgpu::autograd;
use vqgpu::nn::{EmaConfig, EmaState};
use vqgpu::ops::{ema, gather, vq};
use vqgpu::Gpu;

fn dist(a: &[f64], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, &y)| (x - y as f64).powi(2)).sum()
}

/// Checks that every chosen code is a nearest one (up to f32 rounding of near-ties) and that most
/// choices agree exactly with the f64 argmin.
fn check_nearest(
    codes: &[f32],
    z: &[f32],
    e: &[f32],
    [batch, d, h, w]: [usize; 4],
    k: usize,
    what: &str,
) {
    let hw = h * w;
    let mut exact = 0;
    assert_eq!(codes.len(), batch * hw, "{what}: one code per row");
    for (n, &chosen) in codes.iter().enumerate() {
        let v = row(z, d, hw, n);
        let dists: Vec<f64> = (0..k).map(|c| dist(&v, &e[c * d..(c + 1) * d])).collect();
        let best = (0..k)
            .min_by(|&a, &b| dists[a].total_cmp(&dists[b]))
            .unwrap();
        assert!(
            chosen.fract() == 0.0 && (chosen as usize) < k,
            "{what}: row {n} has code {chosen}"
        );
        let chosen = chosen as usize;
        let scale = v.iter().map(|x| x * x).sum::<f64>() + 1.0;
        assert!(
            dists[chosen] - dists[best] <= 1e-5 * scale,
            "{what}: row {n} chose {chosen} at {} but {best} is at {}",
            dists[chosen],
            dists[best]
        );
        exact += usize::from(chosen == best);
    }
    assert!(
        exact * 100 >= 99 * batch * hw,
        "{what}: only {exact} of {} exact",
        batch * hw
    );
}

#[test]
fn nearest_code_matches_reference_at_many_shapes() {
    for gpu in kernel_set_gpus() {
        nearest_at_many_shapes(&gpu);
    }
}

fn nearest_at_many_shapes(gpu: &vqgpu::Gpu) {
    let gpu = gpu.clone();
    let mut rng = rng(200);
    // [B, D, H, W], K: single row and code, sizes off the 64-row / 64-code / 16-dim tiles, D = 512,
    // and 1024 rows against 1000 codes, whose search the gpu set splits into chunks of two
    // 64-code tiles (the second tile's first slice is loaded while the first tile's last one is used)
    for (shape, k) in [
        ([1, 1, 1, 1], 1),
        ([2, 3, 5, 7], 10),
        ([3, 64, 8, 8], 512),
        ([1, 17, 9, 9], 130),
        ([2, 512, 2, 3], 70),
        ([1, 8, 1, 1], 4000),
        ([5, 4, 3, 3], 65),
        ([4, 32, 16, 16], 1000),
        ([2, 12, 2, 2], 37), // planes of whole texels (the CPU set's blocked search), codes too
        ([2, 5, 4, 4], 19),  // planes of whole texels, codes not
    ] {
        let (z, zv) = random_tensor(&gpu, &mut rng, &shape);
        let (e, ev) = random_tensor(&gpu, &mut rng, &[k, shape[1]]);
        let what = format!("z {shape:?} K={k} kernels={}", gpu.kernel_set());
        let codes = download(&vq::nearest_codes(&z, &e));
        assert_eq!(codes.len(), shape[0] * shape[2] * shape[3]);
        check_nearest(&codes, &zv, &ev, shape, k, &what);
        // the naive baseline is exact on llvmpipe only while K * (D + 2) stays under its loop limit
        if k * (shape[1] + 2) < 60_000 {
            let naive = download(&vq::nearest_codes_naive(&z, &e));
            check_nearest(&naive, &zv, &ev, shape, k, &format!("naive {what}"));
        }
    }
}

/// The CPU set's search finds the same codes whether it reads the codebook and z from texture
/// copies or from the buffers (a row and code count off its 8 x 8 blocks, D off its 4-deep
/// steps).
#[test]
fn texture_copies_and_buffer_reads_find_the_same_codes() {
    let Some([copies, buffers]) = copies_and_buffer_reads() else {
        return;
    };
    for (shape, k) in [
        ([2, 3, 5, 7], 10),
        ([3, 64, 8, 8], 512),
        ([1, 17, 9, 9], 130),
        ([2, 12, 2, 2], 37),
        ([2, 5, 4, 4], 19),
    ] {
        let mut rng = rng(211);
        let zv = random(&mut rng, shape.iter().product());
        let ev = random(&mut rng, k * shape[1]);
        let codes = |gpu: &Gpu| {
            let z = upload(gpu, &shape, &zv);
            let e = upload(gpu, &[k, shape[1]], &ev);
            download(&vq::nearest_codes(&z, &e))
        };
        assert_eq!(codes(&copies), codes(&buffers), "z {shape:?} K={k}");
    }
}

/// Both tiles of the fused search, forced, against the reference; and each other, code for code.
/// Shapes off the 128-row / 128-code / 8-dim tile, several chunks, ties planted across code tiles.
#[test]
fn both_search_tiles_match_reference_and_each_other() {
    use vqgpu::ops::gemm::GemmTile;
    let gpu = gpu();
    let mut rng = rng(209);
    for (shape, k) in [
        ([1, 1, 1, 1], 1),
        ([2, 3, 5, 7], 10),
        ([1, 9, 13, 11], 300),
        ([3, 64, 8, 8], 512),
        ([2, 130, 3, 5], 129),
        ([4, 32, 16, 16], 1000),
    ] {
        let (z, zv) = random_tensor(&gpu, &mut rng, &shape);
        let mut ev = random(&mut rng, k * shape[1]);
        // a code repeated 128 and 64 codes later: the search must keep the first of equals
        if k > 200 {
            for c in 0..shape[1] {
                ev[(k - 1) * shape[1] + c] = ev[(k - 129) * shape[1] + c];
                ev[(k - 65) * shape[1] + c] = ev[(k - 129) * shape[1] + c];
            }
        }
        let e = upload(&gpu, &[k, shape[1]], &ev);
        let [small, wide] = [GemmTile::Square64, GemmTile::Square128].map(|tile| {
            let codes = download(&vq::nearest_codes_on_tile(&z, &e, tile));
            check_nearest(
                &codes,
                &zv,
                &ev,
                shape,
                k,
                &format!("z {shape:?} K={k} {tile}"),
            );
            codes
        });
        assert_eq!(
            small, wide,
            "z {shape:?} K={k}: the tiles chose differently"
        );
    }
}

/// K = 16384 codes of dimension 512 on one device's kernel set; 4 positions per plane, which the
/// cpu set searches in blocks.
fn largest_codebook(gpu: &vqgpu::Gpu) {
    let gpu = gpu.clone();
    let mut rng = rng(207);
    let shape = [1, 512, 1, 4];
    let (z, zv) = random_tensor(&gpu, &mut rng, &shape);
    let mut ev = random(&mut rng, 16384 * 512);
    // plant each row as a code late in the codebook, where a truncated search never looks
    for (r, code) in [(0, 16383), (1, 12345), (2, 9000), (3, 4)] {
        for c in 0..512 {
            ev[code * 512 + c] = zv[c * 4 + r];
        }
    }
    let e = upload(&gpu, &[16384, 512], &ev);
    let codes = download(&vq::nearest_codes(&z, &e));
    let what = format!("K=16384 D=512 kernels={}", gpu.kernel_set());
    assert_eq!(codes, [16383.0, 12345.0, 9000.0, 4.0], "{what}");
    check_nearest(&codes, &zv, &ev, shape, 16384, &what);
}

#[test]
fn largest_codebooks_and_long_batches_are_exact() {
    // K = 16384 codes of dimension 512, and one code taking 70000 rows: both exceed the software
    // driver's 65535-iteration loop limit unless the work is split (it was, silently, before)
    for gpu in kernel_set_gpus() {
        largest_codebook(&gpu);
    }
    let gpu = gpu();
    let mut rng = rng(208);
    let rows = 70_000;
    let codes = vqgpu::Tensor::zeros(&gpu, &[1, 1, rows]);
    let (src, sv) = random_tensor(&gpu, &mut rng, &[1, 1, 1, rows]);
    let (counts, sums) = gather::index_sums(&codes, &src, 2);
    assert_eq!(download(&counts), [rows as f32, 0.0]);
    let total: f64 = sv.iter().map(|&v| v as f64).sum();
    assert_close(
        &download(&sums),
        &[total, 0.0],
        1e-5,
        1e-3,
        "sum over 70000 rows",
    );
}

#[test]
fn ties_go_to_the_lowest_index() {
    let gpu = gpu();
    let (k, d) = (200, 3);
    // integer-valued codes (exact in f32): code c is one of 7 points, so each point repeats in
    // many code tiles; every z is one of those points or the midpoint of two of them
    let points: [[f32; 3]; 7] = [
        [0., 0., 0.],
        [2., 0., 0.],
        [0., 2., 0.],
        [0., 0., 2.],
        [2., 2., 0.],
        [-2., 0., 2.],
        [4., 4., 4.],
    ];
    let e: Vec<f32> = (0..k).flat_map(|c| points[(c * 3 + 1) % 7]).collect();
    let first = |pt: usize| (0..k).find(|&c| (c * 3 + 1) % 7 == pt).unwrap();
    let mut z_rows: Vec<[f32; 3]> = points.to_vec();
    z_rows.push([1., 0., 0.]); // equidistant from points 0 and 1
    let n = z_rows.len();
    let z: Vec<f32> = (0..d)
        .flat_map(|c| z_rows.iter().map(move |r| r[c]))
        .collect(); // [1, D, 1, n]
    let codes = download(&vq::nearest_codes(
        &upload(&gpu, &[1, d, 1, n], &z),
        &upload(&gpu, &[k, d], &e),
    ));
    for (pt, &c) in codes[..7].iter().enumerate() {
        assert_eq!(c as usize, first(pt), "point {pt}");
    }
    assert_eq!(codes[7] as usize, first(0).min(first(1)), "midpoint");
}

#[test]
fn ema_updates_match_reference_over_several_steps() {
    let gpu = gpu();
    let mut rng = rng(203);
    let (batch, d, h, w, k) = (2, 6, 4, 4, 11);
    let config = EmaConfig::default();
    let (codebook, ev) = random_tensor(&gpu, &mut rng, &[k, d]);
    let state = EmaState::new(&codebook);
    let (g, eps) = (config.decay as f64, config.eps as f64);
    let mut cs = vec![0.0f64; k];
    let mut ea = f64s(&ev);
    for step in 0..4 {
        let (z, zv) = random_tensor(&gpu, &mut rng, &[batch, d, h, w]);
        let codes = vq::nearest_codes(&z, &codebook);
        let code_values = download(&codes);
        let (counts, sums) = gather::index_sums(&codes, &z, k);
        ema::ema_update(
            &codebook,
            state.tensors(),
            &counts,
            &sums,
            config.decay,
            config.eps,
        );
        let mut n_k = vec![0.0; k];
        let mut s_k = vec![0.0; k * d];
        for (i, &c) in code_values.iter().enumerate() {
            n_k[c as usize] += 1.0;
            for (j, v) in row(&zv, d, h * w, i).iter().enumerate() {
                s_k[c as usize * d + j] += v;
            }
        }
        for c in 0..k {
            cs[c] = g * cs[c] + (1.0 - g) * n_k[c];
            for j in 0..d {
                ea[c * d + j] = g * ea[c * d + j] + (1.0 - g) * s_k[c * d + j];
            }
        }
        let n: f64 = cs.iter().sum();
        let e_ref: Vec<f64> = (0..k * d)
            .map(|i| ea[i] / ((cs[i / d] + eps) / (n + k as f64 * eps) * n))
            .collect();
        let what = format!("EMA step {step}");
        assert_close(&download(&state.cluster_size), &cs, 1e-5, 1e-7, &what);
        assert_close(&download(&state.embed_avg), &ea, 1e-5, 1e-6, &what);
        assert_close(&download(&codebook), &e_ref, 1e-4, 1e-5, &what);
    }
}

#[test]
fn dead_codes_restart_from_batch_vectors_after_their_idle_steps() {
    let gpu = gpu();
    let mut rng = rng(204);
    let (batch, d, h, w, k) = (1, 3, 2, 3, 6);
    let (z, zv) = random_tensor(&gpu, &mut rng, &[batch, d, h, w]);
    let (codebook, ev) = random_tensor(&gpu, &mut rng, &[k, d]);
    let state = EmaState::new(&codebook);
    // only codes 0 and 2 are used
    let counts = upload(&gpu, &[k], &[4.0, 0.0, 2.0, 0.0, 0.0, 0.0]);
    let first = download(&ema::restart_dead(
        &codebook,
        state.tensors(),
        &counts,
        &z,
        2,
        9,
    ));
    assert_eq!(first, [0.0; 6], "no code is idle for 2 steps yet");
    assert_eq!(download(&codebook), ev);
    assert_eq!(
        download(&state.unused_steps),
        [0.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    );
    let second = download(&ema::restart_dead(
        &codebook,
        state.tensors(),
        &counts,
        &z,
        2,
        9,
    ));
    assert_eq!(second, [0.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
    let e = download(&codebook);
    let rows: Vec<Vec<f64>> = (0..h * w).map(|n| row(&zv, d, h * w, n)).collect();
    for c in 0..k {
        let code: Vec<f64> = f64s(&e[c * d..(c + 1) * d]);
        if second[c] == 1.0 {
            assert!(
                rows.contains(&code),
                "code {c} restarted to a vector not in the batch"
            );
            assert_eq!(
                download(&state.embed_avg)[c * d..(c + 1) * d],
                e[c * d..(c + 1) * d]
            );
            assert_eq!(download(&state.cluster_size)[c], 1.0);
        } else {
            assert_eq!(
                e[c * d..(c + 1) * d],
                ev[c * d..(c + 1) * d],
                "used code {c} changed"
            );
        }
    }
    assert_eq!(download(&state.unused_steps), [0.0; 6]);
}

#[test]
fn straight_through_passes_the_gradient_to_z_unchanged() {
    let gpu = gpu();
    let mut rng = rng(205);
    let (z, _) = random_tensor(&gpu, &mut rng, &[2, 3, 2, 2]);
    let (zq, zqv) = random_tensor(&gpu, &mut rng, &[2, 3, 2, 2]);
    let (r, rv) = random_tensor(&gpu, &mut rng, &[2, 3, 2, 2]);
    let z = z.with_requires_grad(true);
    let zq = zq.with_requires_grad(true);
    let out = vq::straight_through(&z, &zq);
    assert_eq!(download(&out), zqv, "forward is z_q");
    let grads = out.mul(&r).sum().backward();
    assert_eq!(
        download(&grads.get(&z).unwrap()),
        rv,
        "d/dz is the upstream gradient"
    );
    assert!(
        grads.get(&zq).is_none(),
        "z_q gets no gradient through the estimator"
    );
}

#[test]
fn usage_statistics_match_reference() {
    // the gpu set over every way of compiling its collectives, and the cpu set where the adapter
    // runs it
    let cpu_set = kernel_set_gpus()
        .into_iter()
        .filter(|gpu| gpu.kernel_set() == vqgpu::gpu::KernelSet::Cpu);
    for gpu in collective_gpus().into_iter().chain(cpu_set) {
        usage_statistics_match_reference_on(&gpu);
    }
}

/// The CPU set's statistics (one invocation, its loops within the software driver's limit) take
/// the same bits as the GPU set's workgroup tree, at codebooks smaller than the tree's 256 parts,
/// not a multiple of them, and past the limit (the tree on both).
#[test]
fn usage_statistics_take_the_same_bits_on_both_kernel_sets() {
    let gpus = kernel_set_gpus();
    for k in [1, 5, 256, 700, 5_000, 60_000, 60_001] {
        // counts of many sizes, a third of the codes or more unused
        let counts: Vec<f32> = (0..k).map(|i| ((i * 7919) % 3 * (i % 13)) as f32).collect();
        let rows = counts.iter().sum::<f32>().max(1.0) as usize;
        let stats: Vec<Vec<u32>> = gpus
            .iter()
            .map(|gpu| {
                let counts = upload(gpu, &[k], &counts);
                let s = download(&vq::code_stats(&counts, rows));
                s.iter().map(|v| v.to_bits()).collect()
            })
            .collect();
        assert!(
            stats.windows(2).all(|w| w[0] == w[1]),
            "{k} codes: {stats:?}"
        );
        let perplexity = f32::from_bits(stats[0][0]);
        assert!(
            perplexity.is_finite() && perplexity >= 1.0,
            "{k} codes: {perplexity}"
        );
    }
}

fn usage_statistics_match_reference_on(gpu: &Gpu) {
    for counts in [vec![5.0, 0.0, 3.0, 0.0], vec![1.0; 600], vec![7.0]] {
        let n: f64 = counts.iter().sum();
        let entropy: f64 = counts
            .iter()
            .filter(|&&c| c > 0.0)
            .map(|&c| -(c / n) * (c / n).ln())
            .sum();
        let used = counts.iter().filter(|&&c| c > 0.0).count() as f64 / counts.len() as f64;
        let stats = vq::code_stats(
            &upload(
                gpu,
                &[counts.len()],
                &counts.iter().map(|&c| c as f32).collect::<Vec<_>>(),
            ),
            n as usize,
        );
        assert_close(
            &download(&stats),
            &[entropy.exp(), used],
            1e-5,
            1e-6,
            &format!("{} codes ({})", counts.len(), gpu.collectives()),
        );
    }
}

#[test]
fn quantizer_losses_match_reference_and_reach_codebook_and_encoder() {
    let gpu = gpu();
    let mut rng = rng(206);
    let (z, zv) = random_tensor(&gpu, &mut rng, &[2, 4, 3, 3]);
    let (e, ev) = random_tensor(&gpu, &mut rng, &[9, 4]);
    let codes = vq::nearest_codes(&z, &e);
    let code_values = download(&codes);
    let z = z.with_requires_grad(true);
    let e = e.with_requires_grad(true);
    let zq = gather::gather(&codes, &e);
    let beta = 0.25f64;
    let codebook_loss = vqgpu::ops::reduce::mse_loss(&zq, &z.detach());
    let commitment = vqgpu::ops::reduce::mse_loss(&z, &zq.detach()).scale(beta as f32);
    let loss = codebook_loss.add(&commitment);
    // reference: mean over elements of (z - e_code)^2, times (1 + beta)
    let mut sq = 0.0;
    for n in 0..18 {
        let v = row(&zv, 4, 9, n);
        sq += dist(
            &v,
            &ev[code_values[n] as usize * 4..code_values[n] as usize * 4 + 4],
        );
    }
    let mean = sq / 72.0;
    assert_close(
        &download(&loss),
        &[(1.0 + beta) * mean],
        1e-5,
        1e-6,
        "vq loss",
    );
    let grads = loss.backward();
    assert!(grads.get(&z).is_some() && grads.get(&e).is_some());
    assert_eq!(autograd::tape_len(), 0);
    // d/dz of the commitment term: 2 beta (z - e_code) / numel
    let gz = download(&grads.get(&z).unwrap());
    for (i, &g) in gz.iter().enumerate() {
        let (b, c, s) = (i / 36, (i / 9) % 4, i % 9);
        let code = code_values[b * 9 + s] as usize;
        let want = 2.0 * beta * (zv[i] - ev[code * 4 + c]) as f64 / 72.0;
        assert!((g as f64 - want).abs() < 1e-6, "dz[{i}] {g} vs {want}");
    }
}

/// With dead-code restarts on, the first training step restarts every code its batch left
/// unused from the batch's vectors (the codebook starts from data); later steps wait for the idle
/// steps as before.
#[test]
fn the_first_training_step_starts_every_unused_code_from_the_batch() {
    use vqgpu::nn::{CodebookUpdate, ParamStore, VectorQuantizer};
    let gpu = gpu();
    let mut rng = rng(207);
    let (k, d) = (16, 4);
    let mut ps = ParamStore::new(&gpu, 3);
    let update = CodebookUpdate::Ema {
        config: EmaConfig::default(),
        restart_after: Some(20),
    };
    let mut q = VectorQuantizer::new(&mut ps.scope("vq"), k, d, 0.25, update);
    ps.finalize().unwrap();
    q.init_state();
    // 18 vectors far from the initial codebook: the nearest-code search picks a few codes only
    let (z, zv) = random_tensor(&gpu, &mut rng, &[2, d, 3, 3]);
    let z = z.scale(50.0);
    let zv: Vec<f32> = zv.iter().map(|v| v * 50.0).collect();
    let first = q.forward(&z, true);
    let codes = download(&first.codes);
    let mut used: Vec<usize> = codes.iter().map(|&c| c as usize).collect();
    used.sort_unstable();
    used.dedup();
    assert!(used.len() < k, "every code used: the test shows nothing");
    assert_eq!(download(&first.restarted), [(k - used.len()) as f32]);
    let rows: Vec<Vec<f64>> = (0..18).map(|n| row(&zv, d, 9, n)).collect();
    let e = download(q.codebook.weight.tensor());
    for c in (0..k).filter(|c| !used.contains(c)) {
        let code = f64s(&e[c * d..(c + 1) * d]);
        let near = rows.iter().any(|r| {
            r.iter()
                .zip(&code)
                .all(|(a, b)| (a - b).abs() <= 1e-4 * a.abs().max(1.0))
        });
        assert!(near, "unused code {c} was not restarted from the batch");
    }
    let second = q.forward(&z, true);
    assert_eq!(download(&second.restarted), [0.0], "idle for one step only");
}
