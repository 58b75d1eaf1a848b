//! gather.wgsl against plain f64 references: the embedding lookup and its gradient, and the
//! per-index counts and sums (D across several 512-dim blocks, more positions than one 256-row
//! block, K = 1 and unused indices).

mod common;
use common::*;
use rand_chacha::ChaCha8Rng;
use vqgpu::ops::gather;
use vqgpu::Gpu;

/// The f64 lookup of `table` [K, D] rows by `indices` [B, H, W] (hw = H x W), as [B, D, H, W].
fn reference_gather(indices: &[f32], table: &[f32], d: usize, hw: usize) -> Vec<f64> {
    (0..indices.len() * d)
        .map(|i| {
            let (b, c, s) = (i / (d * hw), (i / hw) % d, i % hw);
            table[indices[b * hw + s] as usize * d + c] as f64
        })
        .collect()
}

/// `index_sums` of `indices` [B, H, W] over random vectors [B, D, H, W] against f64 counts and sums.
fn check_index_sums(
    gpu: &Gpu,
    rng: &mut ChaCha8Rng,
    (batch, d, h, w, k): (usize, usize, usize, usize, usize),
    indices: &[f32],
) {
    let index_tensor = upload(gpu, &[batch, h, w], indices);
    let (src, sv) = random_tensor(gpu, rng, &[batch, d, h, w]);
    let (counts, sums) = gather::index_sums(&index_tensor, &src, k);
    let mut want_counts = vec![0.0; k];
    let mut want_sums = vec![0.0; k * d];
    for (i, &c) in indices.iter().enumerate() {
        let c = c as usize;
        want_counts[c] += 1.0;
        for (j, v) in row(&sv, d, h * w, i).iter().enumerate() {
            want_sums[c * d + j] += v;
        }
    }
    let what = format!(
        "index sums B={batch} D={d} {h}x{w} K={k} kernels={}",
        gpu.kernel_set()
    );
    assert_close(&download(&counts), &want_counts, 0.0, 0.0, &what);
    assert_close(&download(&sums), &want_sums, 1e-5, 1e-5, &what);
}

#[test]
fn gather_and_its_codebook_gradient_match_reference() {
    let gpu = gpu();
    let mut rng = rng(201);
    let (batch, d, h, w, k) = (2, 5, 3, 4, 7);
    let code_values: Vec<f32> = (0..batch * h * w)
        .map(|i| ((i * 5 + 3) % k) as f32)
        .collect();
    let codes = upload(&gpu, &[batch, h, w], &code_values);
    let (e, ev) = random_tensor(&gpu, &mut rng, &[k, d]);
    assert_close(
        &download(&gather::gather(&codes, &e)),
        &reference_gather(&code_values, &ev, d, h * w),
        0.0,
        0.0,
        "gather",
    );
    let e_data = (vec![k, d], ev);
    grad_check(
        &gpu,
        &[e_data],
        &|t| gather::gather(&codes, &t[0]),
        35,
        1e-2,
        1e-2,
        "gather gradient",
    );
}

#[test]
fn index_sums_match_reference() {
    // the cpu set where the adapter runs it, and the gpu set over every way of compiling its
    // collectives
    let cpu_set = kernel_set_gpus()
        .into_iter()
        .filter(|gpu| gpu.kernel_set() == vqgpu::gpu::KernelSet::Cpu);
    for gpu in cpu_set.chain(collective_gpus()) {
        let mut rng = rng(202);
        // more rows than one 256-row block, D above 256 (the second dim slot), K = 1 and unused
        // codes; the last two span several of the cpu set's segments (60000 / (2 D + 2) positions)
        for (batch, d, h, w, k) in [
            (1, 1, 1, 1, 1),
            (3, 300, 10, 11, 9),
            (2, 64, 8, 8, 512),
            (1, 7, 1, 600, 5),
            (32, 64, 8, 8, 512),
            (1, 3000, 7, 9, 4),
        ] {
            let n = batch * h * w;
            let code_values: Vec<f32> = (0..n).map(|i| ((i * i + 7 * i) % k) as f32).collect();
            check_index_sums(&gpu, &mut rng, (batch, d, h, w, k), &code_values);
        }
    }
}

/// The per-code sums list their hits through `workgroup_compact`: every way of compiling it gives
/// the same bits.
#[test]
fn index_sums_agree_bit_for_bit_over_every_collective() {
    let (batch, d, h, w, k) = (5, 70, 9, 13, 6);
    let n = batch * h * w;
    let index_values: Vec<f32> = (0..n).map(|i| ((i * i + 3 * i) % k) as f32).collect();
    assert_same_bits_over_collectives(|gpu| {
        let mut rng = rng(207);
        let (src, _) = random_tensor(gpu, &mut rng, &[batch, d, h, w]);
        let indices = upload(gpu, &[batch, h, w], &index_values);
        let (counts, sums) = gather::index_sums(&indices, &src, k);
        [download(&counts), download(&sums)]
    });
}

#[test]
fn index_sums_and_gather_handle_vectors_wider_than_one_dim_block() {
    for gpu in kernel_set_gpus() {
        wide_vectors(&gpu);
    }
}

fn wide_vectors(gpu: &Gpu) {
    let gpu = gpu.clone();
    let mut rng = rng(205);
    for (batch, d, h, w, k) in [(2, 600, 3, 5, 4), (1, 1100, 2, 9, 3)] {
        let n = batch * h * w;
        let index_values: Vec<f32> = (0..n).map(|i| ((i * 7 + 1) % k) as f32).collect();
        check_index_sums(&gpu, &mut rng, (batch, d, h, w, k), &index_values);
        let indices = upload(&gpu, &[batch, h, w], &index_values);
        let (table, tv) = random_tensor(&gpu, &mut rng, &[k, d]);
        assert_close(
            &download(&gather::gather(&indices, &table)),
            &reference_gather(&index_values, &tv, d, h * w),
            0.0,
            0.0,
            &format!("gather D={d}"),
        );
    }
}
