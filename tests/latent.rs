//! latent.wgsl: the GPU random numbers' statistics, corruption, and the reparameterization, KL and
//! Bernoulli cross-entropy against f64 references and finite differences.

mod common;
use common::*;
use vqgpu::ops::latent;

fn mean_var(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

#[test]
fn gpu_normals_have_the_right_moments_and_tails_and_follow_the_seed() {
    let gpu = gpu();
    let n = 200_000;
    let x = download(&latent::normal(&gpu, &[n], 3, 0.0, 1.0));
    let (mean, var) = mean_var(&x);
    // standard errors: 1/sqrt(n) for the mean, sqrt(2/n) for the variance
    assert!(mean.abs() < 5.0 / (n as f64).sqrt(), "mean {mean}");
    assert!(
        (var - 1.0).abs() < 5.0 * (2.0 / n as f64).sqrt(),
        "variance {var}"
    );
    let beyond_2 = x.iter().filter(|v| v.abs() > 2.0).count() as f64 / n as f64;
    assert!((beyond_2 - 0.0455).abs() < 0.003, "P(|x| > 2) = {beyond_2}");
    assert!(x.iter().all(|v| v.is_finite()));
    let scaled = download(&latent::normal(&gpu, &[n], 3, 2.0, 0.5));
    for (s, v) in scaled.iter().zip(&x) {
        assert!((s - (2.0 + 0.5 * v)).abs() < 1e-5);
    }
    assert_eq!(download(&latent::normal(&gpu, &[n], 3, 0.0, 1.0)), x);
    let other = download(&latent::normal(&gpu, &[n], 4, 0.0, 1.0));
    assert!(other.iter().zip(&x).filter(|(a, b)| a == b).count() < n / 100);
}

#[test]
fn corruption_masks_the_asked_share_and_adds_noise_of_the_asked_scale() {
    let gpu = gpu();
    let mut rng = rng(31);
    let n = 100_000;
    let (x, xs) = random_tensor(&gpu, &mut rng, &[n]);
    let masked = download(&latent::mask_noise(&x, 0.3, -0.5, 9));
    let replaced = masked.iter().zip(&xs).filter(|(m, v)| m != v).count();
    assert!(masked.iter().zip(&xs).all(|(&m, &v)| m == v || m == -0.5));
    let share = replaced as f64 / n as f64;
    assert!((share - 0.3).abs() < 0.01, "masked share {share}");
    let noisy = download(&latent::gaussian_noise(&x, 0.2, 9));
    let diff: Vec<f32> = noisy.iter().zip(&xs).map(|(a, b)| a - b).collect();
    let (mean, var) = mean_var(&diff);
    assert!(
        mean.abs() < 0.005 && (var.sqrt() - 0.2).abs() < 0.005,
        "noise {mean} {var}"
    );
}

/// (mu, logvar) at output element i of [b, l, s] from halves data [b, 2l, s].
fn mu_logvar(h: &[f32], l: usize, s: usize, i: usize) -> (f64, f64) {
    let (b, r) = (i / (l * s), i % (l * s));
    let m = b * 2 * l * s + r;
    (h[m] as f64, h[m + l * s] as f64)
}

#[test]
fn reparameterization_kl_and_bce_match_references() {
    let gpu = gpu();
    let mut rng = rng(32);
    for shape in [vec![1, 2], vec![3, 10], vec![2, 6, 5, 7], vec![300, 4]] {
        let (b, l2) = (shape[0], shape[1]);
        let s: usize = shape[2..].iter().product();
        let l = l2 / 2;
        let (h, hs) = random_tensor(&gpu, &mut rng, &shape);
        let mut out_shape = shape.clone();
        out_shape[1] = l;
        let (eps, es) = random_tensor(&gpu, &mut rng, &out_shape);
        let n = b * l * s;
        let (mut z, mut k) = (vec![0.0; n], vec![0.0; n]);
        for i in 0..n {
            let (mu, lv) = mu_logvar(&hs, l, s, i);
            z[i] = mu + (0.5 * lv).exp() * es[i] as f64;
            k[i] = -0.5 * (1.0 + lv - mu * mu - lv.exp());
        }
        let what = format!("{shape:?}");
        assert_close(
            &download(&latent::reparameterize(&h, &eps)),
            &z,
            1e-5,
            1e-6,
            &what,
        );
        assert_close(&download(&latent::kl(&h)), &k, 1e-5, 1e-6, &what);
    }
    // cross-entropy with extreme logits stays finite and exact
    let logits = [-100.0f32, -10.0, -1.0, 0.0, 0.5, 10.0, 100.0];
    let targets = [0.0f32, 1.0, 0.3, 0.5, 1.0, 0.0, 1.0];
    let want: Vec<f64> = logits
        .iter()
        .zip(&targets)
        .map(|(&x, &t)| {
            let (x, t) = (x as f64, t as f64);
            x.max(0.0) - x * t + (1.0 + (-x.abs()).exp()).ln()
        })
        .collect();
    let x = upload(&gpu, &[7], &logits);
    let t = upload(&gpu, &[7], &targets);
    assert_close(
        &download(&latent::bce_logits(&x, &t)),
        &want,
        1e-5,
        1e-6,
        "bce",
    );
}

#[test]
fn latent_backwards_match_finite_differences() {
    let gpu = gpu();
    let mut rng = rng(33);
    let halves = (vec![2, 6, 2, 3], random(&mut rng, 72));
    // a fixed eps: the reparameterization is then a plain function of (mu, logvar)
    let eps = upload(&gpu, &[2, 3, 2, 3], &random(&mut rng, 36));
    grad_check(
        &gpu,
        std::slice::from_ref(&halves),
        &|t| latent::reparameterize(&t[0], &eps),
        72,
        1e-2,
        2e-2,
        "reparameterize",
    );
    grad_check(
        &gpu,
        &[halves],
        &|t| latent::kl(&t[0]),
        72,
        1e-2,
        2e-2,
        "kl",
    );
    let targets = upload(
        &gpu,
        &[40],
        &random(&mut rng, 40)
            .iter()
            .map(|v| v * 0.5 + 0.5)
            .collect::<Vec<_>>(),
    );
    let logits = (
        vec![40],
        random(&mut rng, 40).iter().map(|v| v * 4.0).collect(),
    );
    grad_check(
        &gpu,
        &[logits],
        &|t| latent::bce_logits(&t[0], &targets),
        40,
        1e-2,
        2e-2,
        "bce",
    );
}
