//! reduce.wgsl against plain f64 references, determinism, and backwards against finite differences.

mod common;
use common::*;
use vqgpu::ops::reduce;
use vqgpu::Gpu;

#[test]
fn full_sums_means_and_mse_match_reference() {
    for gpu in collective_gpus() {
        full_sums_means_and_mse_match_reference_on(&gpu);
    }
}

fn full_sums_means_and_mse_match_reference_on(gpu: &Gpu) {
    let what = gpu.collectives();
    let mut rng = rng(10);
    // around the 256-thread workgroup, the 1024-element chunk and the 256-partial cap
    for n in [1, 5, 256, 1023, 1025, 70_000, 300_001] {
        let (a, av) = random_tensor(gpu, &mut rng, &[n]);
        let (b, bv) = random_tensor(gpu, &mut rng, &[n]);
        let sum: f64 = av.iter().map(|&v| v as f64).sum();
        let mse: f64 = av
            .iter()
            .zip(&bv)
            .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
            .sum::<f64>()
            / n as f64;
        let atol = 1e-5 * (n as f64).sqrt();
        assert_close(
            &download(&a.sum()),
            &[sum],
            1e-5,
            atol,
            &format!("sum n={n} ({what})"),
        );
        assert_close(
            &download(&a.mean()),
            &[sum / n as f64],
            1e-5,
            atol / n as f64,
            &format!("mean n={n} ({what})"),
        );
        assert_close(
            &download(&reduce::mse_loss(&a, &b)),
            &[mse],
            1e-5,
            1e-6,
            &format!("mse n={n} ({what})"),
        );
    }
}

/// Every way of compiling the collective operations takes the same sums in the same order.
#[test]
fn subgroup_and_plain_collectives_agree_bit_for_bit() {
    assert_same_bits_over_collectives(|gpu| {
        let mut rng = rng(14);
        let (a, _) = random_tensor(gpu, &mut rng, &[123_457]);
        let (b, _) = random_tensor(gpu, &mut rng, &[123_457]);
        let (c, _) = random_tensor(gpu, &mut rng, &[5, 40, 7, 13]);
        let counts: Vec<f32> = (0..700).map(|k| ((k * 37) % 11) as f32).collect();
        let rows = counts.iter().sum::<f32>() as usize;
        let counts = upload(gpu, &[700], &counts);
        [
            download(&a.sum()),
            download(&reduce::mse_loss(&a, &b)),
            download(&reduce::sum_per_channel(&c)),
            download(&vqgpu::ops::vq::code_stats(&counts, rows)),
        ]
    });
}

/// The CPU set's per-channel sums (one invocation per channel, no barriers), reading texture
/// copies or buffers, take the same bits as the GPU set's workgroup tree, and match the f64 sums.
#[test]
fn per_channel_sums_take_the_same_bits_on_both_kernel_sets() {
    let mut gpus = kernel_set_gpus();
    gpus.extend(copies_and_buffer_reads().map(|[_, buffers]| buffers));
    for (i, shape) in [
        vec![3, 5, 7],       // fewer terms than the tree's 256 partials
        vec![7, 3, 100],     // several terms per partial, a plane that does not divide 256
        vec![33, 17, 1],     // one value per plane: a partial steps over 256 planes
        vec![1, 130, 513],   // channels not a multiple of 8, planes longer than 256
        vec![4, 9, 16, 16],  // a convolution's output
        vec![2, 2, 40_000],  // past the CPU set's loop limit: the workgroup tree there too
        vec![2, 64, 30_000], // just under it
        // planes of whole texels, which the CPU set sums four partials at a time
        vec![3, 5, 8],     // fewer terms than partials
        vec![32, 6, 8, 8], // 64 a plane: each partial steps over 4 planes
        vec![9, 4, 12],    // 256 % 12 = 4: the plane position carries into the next plane
        vec![5, 3, 1024],  // planes longer than 256
        vec![70, 2, 4],    // a texel a plane
        vec![6, 3, 50],    // even planes that are not whole texels: one partial at a time
    ]
    .into_iter()
    .enumerate()
    {
        let data = random(&mut rng(40 + i as u64), shape.iter().product());
        let sums = |gpu: &Gpu| download(&reduce::sum_per_channel(&upload(gpu, &shape, &data)));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let first = sums(&gpus[0]);
        let inner: usize = shape[2..].iter().product();
        let mut want = vec![0.0; shape[1]];
        for (j, &x) in data.iter().enumerate() {
            want[(j / inner) % shape[1]] += x as f64;
        }
        for gpu in &gpus {
            let what = format!(
                "{shape:?}, kernels={}, copies {}",
                gpu.kernel_set(),
                gpu.texture_copies()
            );
            let got = sums(gpu);
            assert_eq!(bits(&got), bits(&first), "{what}");
            let atol = 1e-5 * (data.len() as f64).sqrt();
            assert_close(&got, &want, 1e-5, atol, &what);
        }
    }
}

#[test]
fn reductions_are_bitwise_deterministic() {
    let gpu = gpu();
    let mut rng = rng(11);
    let (a, _) = random_tensor(&gpu, &mut rng, &[123_457]);
    let (c, _) = random_tensor(&gpu, &mut rng, &[64, 300, 3]);
    let first = (
        download(&a.sum()),
        download(&reduce::sum_per_channel(&c)),
        download(&reduce::sum_axis(&c, 1)),
    );
    for _ in 0..3 {
        let again = (
            download(&a.sum()),
            download(&reduce::sum_per_channel(&c)),
            download(&reduce::sum_axis(&c, 1)),
        );
        assert_eq!(first.0, again.0);
        assert_eq!(first.1, again.1);
        assert_eq!(first.2, again.2);
    }
}

fn reference_sum_axis(data: &[f32], shape: &[usize], axis: usize) -> Vec<f64> {
    let outer: usize = shape[..axis].iter().product();
    let mid = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = vec![0.0; outer * inner];
    for o in 0..outer {
        for m in 0..mid {
            for i in 0..inner {
                out[o * inner + i] += data[(o * mid + m) * inner + i] as f64;
            }
        }
    }
    out
}

#[test]
fn axis_and_channel_sums_match_reference() {
    for gpu in collective_gpus() {
        axis_and_channel_sums_match_reference_on(&gpu);
    }
}

fn axis_and_channel_sums_match_reference_on(gpu: &Gpu) {
    let what = gpu.collectives();
    let mut rng = rng(12);
    for shape in [
        vec![1],
        vec![3, 1, 2],
        vec![2, 3, 4, 5],
        vec![5, 300],
        vec![2, 257, 3],
        // more than 256 terms per channel, with a plane size that does not divide 256: each
        // thread of the per-channel sum steps through several (item, position) pairs
        vec![7, 3, 100],
        vec![4, 2, 7, 13],
    ] {
        let (t, v) = random_tensor(gpu, &mut rng, &shape);
        for axis in 0..shape.len() {
            let want = reference_sum_axis(&v, &shape, axis);
            assert_close(
                &download(&reduce::sum_axis(&t, axis)),
                &want,
                1e-5,
                1e-5,
                &format!("sum_axis {shape:?} axis {axis}"),
            );
            let mean: Vec<f64> = want.iter().map(|s| s / shape[axis] as f64).collect();
            assert_close(
                &download(&reduce::mean_axis(&t, axis)),
                &mean,
                1e-5,
                1e-6,
                &format!("mean_axis {shape:?} axis {axis}"),
            );
        }
        if shape.len() >= 2 {
            let c = shape[1];
            let inner: usize = shape[2..].iter().product();
            let mut want = vec![0.0; c];
            for (i, &x) in v.iter().enumerate() {
                want[(i / inner) % c] += x as f64;
            }
            assert_close(
                &download(&reduce::sum_per_channel(&t)),
                &want,
                1e-5,
                1e-5,
                &format!("per-channel {shape:?} ({what})"),
            );
        }
    }
}

#[test]
fn reduction_backwards_match_finite_differences() {
    let gpu = gpu();
    let mut rng = rng(13);
    let shape = vec![2, 3, 5];
    let a = (shape.clone(), random(&mut rng, 30));
    let b = (shape.clone(), random(&mut rng, 30));
    let tol = 2e-2;
    grad_check(
        &gpu,
        std::slice::from_ref(&a),
        &|t| t[0].sum(),
        30,
        1e-2,
        tol,
        "sum",
    );
    grad_check(
        &gpu,
        std::slice::from_ref(&a),
        &|t| t[0].mean(),
        30,
        1e-2,
        tol,
        "mean",
    );
    grad_check(
        &gpu,
        &[a.clone(), b],
        &|t| reduce::mse_loss(&t[0], &t[1]),
        30,
        1e-2,
        tol,
        "mse",
    );
    for axis in 0..3 {
        grad_check(
            &gpu,
            std::slice::from_ref(&a),
            &|t| reduce::sum_axis(&t[0], axis),
            30,
            1e-2,
            tol,
            "sum_axis",
        );
        grad_check(
            &gpu,
            std::slice::from_ref(&a),
            &|t| reduce::mean_axis(&t[0], axis),
            30,
            1e-2,
            tol,
            "mean_axis",
        );
    }
    grad_check(
        &gpu,
        &[a],
        &|t| reduce::sum_per_channel(&t[0]),
        30,
        1e-2,
        tol,
        "sum_per_channel",
    );
}
