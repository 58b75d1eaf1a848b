//! gather.wgsl against plain f64 references: the embedding lookup and its gradient, and the
//! per-index counts and sums (D across several 512-dim blocks, more positions than one 256-row
//! block, K = 1 and unused indices).

mod common;
use common::*;
use vqgpu::ops::gather;

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
    let hw = h * w;
    let want: Vec<f64> = (0..batch * d * hw)
        .map(|i| {
            let (b, c, s) = (i / (d * hw), (i / hw) % d, i % hw);
            ev[code_values[b * hw + s] as usize * d + c] as f64
        })
        .collect();
    assert_close(
        &download(&gather::gather(&codes, &e)),
        &want,
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
    let gpu = gpu();
    let mut rng = rng(202);
    // more rows than one 256-row block, D above 256 (the second dim slot), K = 1 and unused codes
    for (batch, d, h, w, k) in [
        (1, 1, 1, 1, 1),
        (3, 300, 10, 11, 9),
        (2, 64, 8, 8, 512),
        (1, 7, 1, 600, 5),
    ] {
        let n = batch * h * w;
        let code_values: Vec<f32> = (0..n).map(|i| ((i * i + 7 * i) % k) as f32).collect();
        let codes = upload(&gpu, &[batch, h, w], &code_values);
        let (src, sv) = random_tensor(&gpu, &mut rng, &[batch, d, h, w]);
        let (counts, sums) = gather::index_sums(&codes, &src, k);
        let mut want_counts = vec![0.0; k];
        let mut want_sums = vec![0.0; k * d];
        for (i, &c) in code_values.iter().enumerate() {
            let c = c as usize;
            want_counts[c] += 1.0;
            for (j, v) in row(&sv, d, h * w, i).iter().enumerate() {
                want_sums[c * d + j] += v;
            }
        }
        let what = format!("code sums B={batch} D={d} {h}x{w} K={k}");
        assert_close(&download(&counts), &want_counts, 0.0, 0.0, &what);
        assert_close(&download(&sums), &want_sums, 1e-5, 1e-5, &what);
    }
}

#[test]
fn index_sums_and_gather_handle_vectors_wider_than_one_dim_block() {
    let gpu = gpu();
    let mut rng = rng(205);
    for (batch, d, h, w, k) in [(2, 600, 3, 5, 4), (1, 1100, 2, 9, 3)] {
        let n = batch * h * w;
        let index_values: Vec<f32> = (0..n).map(|i| ((i * 7 + 1) % k) as f32).collect();
        let indices = upload(&gpu, &[batch, h, w], &index_values);
        let (src, sv) = random_tensor(&gpu, &mut rng, &[batch, d, h, w]);
        let (counts, sums) = gather::index_sums(&indices, &src, k);
        let mut want_counts = vec![0.0; k];
        let mut want_sums = vec![0.0; k * d];
        for (i, &c) in index_values.iter().enumerate() {
            let c = c as usize;
            want_counts[c] += 1.0;
            for (j, v) in row(&sv, d, h * w, i).iter().enumerate() {
                want_sums[c * d + j] += v;
            }
        }
        let what = format!("index sums B={batch} D={d} {h}x{w} K={k}");
        assert_close(&download(&counts), &want_counts, 0.0, 0.0, &what);
        assert_close(&download(&sums), &want_sums, 1e-5, 1e-5, &what);
        let (table, tv) = random_tensor(&gpu, &mut rng, &[k, d]);
        let hw = h * w;
        let want: Vec<f64> = (0..batch * d * hw)
            .map(|i| {
                let (b, c, s) = (i / (d * hw), (i / hw) % d, i % hw);
                tv[index_values[b * hw + s] as usize * d + c] as f64
            })
            .collect();
        let got = download(&gather::gather(&indices, &table));
        assert_close(&got, &want, 0.0, 0.0, &format!("gather D={d}"));
    }
}
