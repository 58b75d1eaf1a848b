//! softmax.wgsl: cross-entropy and its gradient against f64 references and finite differences,
//! Gumbel-max sampling against the softmax distribution it must draw from.

mod common;
use common::*;
use rand::Rng;
use vqgpu::ops::softmax;
use vqgpu::Gpu;

/// f64 log-softmax of logits [b, k, s] at (item, position).
fn log_softmax(logits: &[f32], k: usize, s: usize, item: usize, pos: usize) -> Vec<f64> {
    let at = |c: usize| logits[(item * k + c) * s + pos] as f64;
    let m = (0..k).map(at).fold(f64::NEG_INFINITY, f64::max);
    let lse = m + (0..k).map(|c| (at(c) - m).exp()).sum::<f64>().ln();
    (0..k).map(|c| at(c) - lse).collect()
}

#[test]
fn cross_entropy_and_gradient_match_reference() {
    let gpu = gpu();
    let mut rng = rng(11);
    // classes and positions around the 256-thread workgroup, one class, the largest K
    for (b, k, s, spread) in [
        (1, 1, 1, 1.0),
        (2, 5, 7, 3.0),
        (2, 7, 4, 3.0),
        (3, 512, 64, 5.0),
        (1, 1000, 3, 100.0),
        (2, 16384, 2, 10.0),
        (257, 3, 1, 1.0),
    ] {
        let what = format!("b={b} k={k} s={s}");
        let logits: Vec<f32> = random(&mut rng, b * k * s)
            .iter()
            .map(|v| v * spread)
            .collect();
        let targets: Vec<f32> = (0..b * s).map(|_| rng.random_range(0..k) as f32).collect();
        let upstream = random(&mut rng, b * s);
        let x = upload(&gpu, &[b, k, s], &logits).with_requires_grad(true);
        let t = upload(&gpu, &[b, s], &targets);
        let loss = softmax::cross_entropy(&x, &t);
        assert_eq!(loss.shape(), [b, s]);
        let mut want_loss = vec![0.0; b * s];
        let mut want_grad = vec![0.0; b * k * s];
        for item in 0..b {
            for pos in 0..s {
                let r = item * s + pos;
                let ls = log_softmax(&logits, k, s, item, pos);
                want_loss[r] = -ls[targets[r] as usize];
                for (c, l) in ls.iter().enumerate() {
                    let hit = if c == targets[r] as usize { 1.0 } else { 0.0 };
                    want_grad[(item * k + c) * s + pos] = upstream[r] as f64 * (l.exp() - hit);
                }
            }
        }
        assert_close(&download(&loss), &want_loss, 1e-5, 1e-5, &what);
        let g = upload(&gpu, &[b, s], &upstream);
        let grads = loss.mul(&g).sum().backward();
        assert_close(
            &download(&grads.get(&x).unwrap()),
            &want_grad,
            1e-4,
            1e-6,
            &format!("gradient {what}"),
        );
    }
}

/// The gradient's kernel reading texture copies, four logits a thread (positions a multiple of
/// 4), gives the same bits as reading the buffers, one logit a thread; and the copies are made.
#[test]
fn texture_copies_and_buffer_reads_give_the_same_gradient() {
    let Some([copies, buffers]) = copies_and_buffer_reads() else {
        return;
    };
    let mut rng = rng(12);
    for (b, k, s) in [(3, 512, 64), (2, 7, 4), (1, 3, 12), (2, 5, 7)] {
        let logits: Vec<f32> = random(&mut rng, b * k * s)
            .iter()
            .map(|v| v * 5.0)
            .collect();
        let targets: Vec<f32> = (0..b * s).map(|_| rng.random_range(0..k) as f32).collect();
        let upstream = random(&mut rng, b * s);
        let gradient = |gpu: &Gpu| {
            let x = upload(gpu, &[b, k, s], &logits).with_requires_grad(true);
            let loss = softmax::cross_entropy(&x, &upload(gpu, &[b, s], &targets));
            let weighted = loss.mul(&upload(gpu, &[b, s], &upstream)).sum();
            let before = gpu.host_stats().texture_copies;
            let grads = weighted.backward();
            let g = bits(&grads.get(&x).expect("a gradient"));
            (g, gpu.host_stats().texture_copies - before)
        };
        let (with_copies, copied) = gradient(&copies);
        let (from_buffers, _) = gradient(&buffers);
        assert!(
            with_copies == from_buffers,
            "b={b} k={k} s={s}: copies and buffers differ"
        );
        // the four inputs of the gradient's kernel, where the positions come in fours
        assert!(
            s % 4 != 0 || copied >= 4,
            "b={b} k={k} s={s}: {copied} copies"
        );
    }
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let gpu = gpu();
    let mut rng = rng(12);
    let (b, k, h, w) = (2, 6, 3, 2);
    let targets: Vec<f32> = (0..b * h * w)
        .map(|_| rng.random_range(0..k) as f32)
        .collect();
    let t = upload(&gpu, &[b, h, w], &targets);
    grad_check(
        &gpu,
        &[(vec![b, k, h, w], random(&mut rng, b * k * h * w))],
        &|x| softmax::cross_entropy(&x[0], &t),
        72,
        1e-2,
        2e-2,
        "cross_entropy",
    );
}

#[test]
fn greedy_sampling_takes_the_first_maximum_and_touches_one_position() {
    let gpu = gpu();
    let mut rng = rng(13);
    let (b, k, s) = (300, 7, 5);
    // values on a coarse lattice so that ties occur
    let logits: Vec<f32> = (0..b * k * s)
        .map(|_| rng.random_range(0..4) as f32)
        .collect();
    let before: Vec<f32> = (0..b * s).map(|i| (i % 3) as f32 + 100.0).collect();
    let grid = upload(&gpu, &[b, s], &before);
    let x = upload(&gpu, &[b, k, s], &logits);
    let position = 3;
    softmax::sample_position(&x, &grid, position, 1, 0, 0.0);
    let got = download(&grid);
    for item in 0..b {
        let at = |c: usize| logits[(item * k + c) * s + position];
        let best = (0..k).fold(0, |best, c| if at(c) > at(best) { c } else { best });
        for pos in 0..s {
            let r = item * s + pos;
            let want = if pos == position {
                best as f32
            } else {
                before[r]
            };
            assert_eq!(got[r], want, "item {item} position {pos}");
        }
    }
}

#[test]
fn gumbel_sampling_draws_from_the_tempered_softmax_and_is_reproducible() {
    let gpu = gpu();
    let (b, k) = (20000, 5);
    let row = [1.0f32, 0.0, -1.0, 2.0, 0.5];
    let logits: Vec<f32> = (0..b).flat_map(|_| row).collect();
    let x = upload(&gpu, &[b, k, 1], &logits);
    for temperature in [1.0f32, 0.5, 3.0] {
        let grid = upload(&gpu, &[b, 1], &vec![0.0; b]);
        softmax::sample_position(&x, &grid, 0, 42, 0, temperature);
        let draws = download(&grid);
        let z: f64 = row
            .iter()
            .map(|&l| (l as f64 / temperature as f64).exp())
            .sum();
        for (c, &l) in row.iter().enumerate() {
            let p = (l as f64 / temperature as f64).exp() / z;
            let count = draws.iter().filter(|&&d| d == c as f32).count() as f64;
            let sigma = (b as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (count - b as f64 * p).abs() < 5.0 * sigma,
                "T={temperature} class {c}: {count} draws, expected {:.0} +- {sigma:.0}",
                b as f64 * p
            );
        }
        // same key, same draws; another seed, other draws
        let again = upload(&gpu, &[b, 1], &vec![0.0; b]);
        softmax::sample_position(&x, &again, 0, 42, 0, temperature);
        assert_eq!(download(&again), draws, "T={temperature}: not reproducible");
        let other = upload(&gpu, &[b, 1], &vec![0.0; b]);
        softmax::sample_position(&x, &other, 0, 43, 0, temperature);
        let differ = download(&other)
            .iter()
            .zip(&draws)
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            differ > b / 10,
            "T={temperature}: seeds 42 and 43 agree on {} of {b}",
            b - differ
        );
    }
}

/// Items drawn in parts, each part told the index of its first item, are the items of the same
/// draw made at once; a part that starts its items at 0 again draws others (the noise of the
/// first items), as drawing in parts did before parts had an offset.
#[test]
fn a_draw_made_in_parts_equals_the_draw_made_at_once() {
    let gpu = gpu();
    let mut rng = rng(14);
    let (b, k, s, position) = (300, 6, 3, 1);
    let logits = random(&mut rng, b * k * s);
    let draw = |items: std::ops::Range<usize>, first: usize| {
        let part = &logits[items.start * k * s..items.end * k * s];
        let x = upload(&gpu, &[items.len(), k, s], part);
        let grid = upload(&gpu, &[items.len(), s], &vec![-1.0; items.len() * s]);
        softmax::sample_position(&x, &grid, position, 7, first, 1.0);
        download(&grid)
    };
    let whole = draw(0..b, 0);
    let mut parts = Vec::new();
    for (start, end) in [(0, 64), (64, 128), (128, 250), (250, 300)] {
        parts.extend(draw(start..end, start));
    }
    assert_eq!(parts, whole, "parts with their first items");
    let restarted = draw(128..250, 0);
    let same = restarted
        .iter()
        .zip(&whole[128 * s..250 * s])
        .filter(|(a, b)| a == b)
        .count();
    // only the drawn position can differ: 122 x 2 positions untouched, about a sixth of the rest
    assert!(
        same < 122 * 2 + 122 / 2,
        "a part drawn from item 0 again agrees on {same} of {}",
        122 * s
    );
}
