//! attention.wgsl: causal multi-head attention and its backward against an f64 reference and
//! finite differences, at lengths that are not multiples of the 256-thread workgroup up to 1024
//! positions; one query at a time against kept keys and values, bit for bit against the whole.

mod common;
use common::*;
use vqgpu::ops::attention;
use vqgpu::Tensor;

/// The f64 reference: per item and head, the output [B, C, L] and the gradients of
/// `sum(out * upstream)` with respect to the queries, keys and values.
struct Reference {
    out: Vec<f64>,
    grads: [Vec<f64>; 3],
}

fn reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    upstream: &[f32],
    shape: [usize; 3],
    heads: usize,
) -> Reference {
    let [b, c, l] = shape;
    let d = c / heads;
    let scale = 1.0 / (d as f64).sqrt();
    let at = |t: &[f32], item: usize, h: usize, f: usize, pos: usize| {
        t[(item * c + h * d + f) * l + pos] as f64
    };
    let mut out = vec![0.0; b * c * l];
    let mut grads = [
        vec![0.0; b * c * l],
        vec![0.0; b * c * l],
        vec![0.0; b * c * l],
    ];
    for item in 0..b {
        for h in 0..heads {
            let index = |f: usize, pos: usize| (item * c + h * d + f) * l + pos;
            for i in 0..l {
                let s: Vec<f64> = (0..=i)
                    .map(|j| {
                        scale
                            * (0..d)
                                .map(|f| at(q, item, h, f, i) * at(k, item, h, f, j))
                                .sum::<f64>()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let total: f64 = e.iter().sum();
                let p: Vec<f64> = e.iter().map(|x| x / total).collect();
                for f in 0..d {
                    out[index(f, i)] = (0..=i).map(|j| p[j] * at(v, item, h, f, j)).sum();
                }
                // backward of row i
                let dp: Vec<f64> = (0..=i)
                    .map(|j| {
                        (0..d)
                            .map(|f| at(upstream, item, h, f, i) * at(v, item, h, f, j))
                            .sum()
                    })
                    .collect();
                let dot: f64 = (0..=i).map(|j| p[j] * dp[j]).sum();
                for j in 0..=i {
                    let ds = p[j] * (dp[j] - dot) * scale;
                    for f in 0..d {
                        grads[0][index(f, i)] += ds * at(k, item, h, f, j);
                        grads[1][index(f, j)] += ds * at(q, item, h, f, i);
                        grads[2][index(f, j)] += p[j] * at(upstream, item, h, f, i);
                    }
                }
            }
        }
    }
    Reference { out, grads }
}

#[test]
fn attention_and_its_gradients_match_the_reference() {
    let gpu = gpu();
    let mut rng = rng(31);
    // (items, channels, positions, heads): one position, lengths around the 256-thread
    // workgroup, an odd grid, heads of one channel, and the 32 x 32 = 1024 positions of the
    // largest top grid
    for (b, c, l, heads, spread) in [
        (1, 1, 1, 1, 1.0),
        (2, 6, 7, 2, 2.0),
        (1, 8, 257, 4, 3.0),
        (3, 4, 64, 4, 1.0),
        (1, 3, 15, 3, 5.0),
        (1, 4, 1024, 2, 1.0),
    ] {
        let what = format!("b={b} c={c} l={l} heads={heads}");
        let n = b * c * l;
        let scaled =
            |rng: &mut _| -> Vec<f32> { random(rng, n).iter().map(|x| x * spread).collect() };
        let (q, k, v) = (scaled(&mut rng), scaled(&mut rng), random(&mut rng, n));
        let upstream = random(&mut rng, n);
        let want = reference(&q, &k, &v, &upstream, [b, c, l], heads);
        let leaf = |data: &[f32]| upload(&gpu, &[b, c, l], data).with_requires_grad(true);
        let (tq, tk, tv) = (leaf(&q), leaf(&k), leaf(&v));
        let out = attention::causal_attention(&tq, &tk, &tv, heads);
        assert_eq!(out.shape(), [b, c, l]);
        assert_close(&download(&out), &want.out, 1e-4, 1e-5, &what);
        let grads = out
            .mul(&upload(&gpu, &[b, c, l], &upstream))
            .sum()
            .backward();
        for (name, (t, reference)) in ["queries", "keys", "values"]
            .iter()
            .zip([&tq, &tk, &tv].into_iter().zip(&want.grads))
        {
            let got = download(&grads.get(t).expect("a gradient"));
            assert_close(
                &got,
                reference,
                1e-3,
                1e-5,
                &format!("{name} gradient, {what}"),
            );
        }
    }
}

#[test]
fn attention_gradients_match_finite_differences() {
    let gpu = gpu();
    let mut rng = rng(32);
    let shape = vec![2, 4, 3, 3];
    let n: usize = shape.iter().product();
    let inputs: Vec<(Vec<usize>, Vec<f32>)> = (0..3)
        .map(|_| (shape.clone(), random(&mut rng, n)))
        .collect();
    grad_check(
        &gpu,
        &inputs,
        &|x| attention::causal_attention(&x[0], &x[1], &x[2], 2),
        n,
        1e-2,
        2e-2,
        "causal_attention",
    );
}

#[test]
fn a_position_sees_only_itself_and_earlier_positions() {
    let gpu = gpu();
    let mut rng = rng(33);
    let (b, c, l) = (2, 4, 20);
    let data: Vec<Vec<f32>> = (0..3).map(|_| random(&mut rng, b * c * l)).collect();
    let run = |data: &[Vec<f32>]| {
        let t: Vec<Tensor> = data.iter().map(|d| upload(&gpu, &[b, c, l], d)).collect();
        download(&attention::causal_attention(&t[0], &t[1], &t[2], 2))
    };
    let before = run(&data);
    let changed_at = 11;
    let mut changed = data.clone();
    for input in changed.iter_mut() {
        for item in 0..b {
            for f in 0..c {
                input[(item * c + f) * l + changed_at] += 0.5;
            }
        }
    }
    let after = run(&changed);
    for item in 0..b {
        for f in 0..c {
            for pos in 0..l {
                let i = (item * c + f) * l + pos;
                if pos < changed_at {
                    assert_eq!(
                        before[i].to_bits(),
                        after[i].to_bits(),
                        "position {pos} changed"
                    );
                } else {
                    assert_ne!(before[i], after[i], "position {pos} did not change");
                }
            }
        }
    }
}

#[test]
fn one_query_against_kept_keys_equals_the_whole_sequence_bit_for_bit() {
    let gpu = gpu();
    let mut rng = rng(34);
    let (b, c, h, w, heads) = (3, 6, 5, 7, 3);
    let shape = [b, c, h, w];
    let (q, qd) = random_tensor(&gpu, &mut rng, &shape);
    let (k, kd) = random_tensor(&gpu, &mut rng, &shape);
    let (v, vd) = random_tensor(&gpu, &mut rng, &shape);
    let whole = download(&attention::causal_attention(&q, &k, &v, heads));
    let l = h * w;
    for position in [0, 1, 17, l - 1] {
        let query: Vec<f32> = (0..b * c).map(|r| qd[r * l + position]).collect();
        let query = upload(&gpu, &[b, c, 1, 1], &query);
        // the later positions are not drawn yet: NaN there must not reach the output
        let kept = |data: &[f32]| {
            let masked: Vec<f32> = (0..data.len())
                .map(|i| if i % l > position { f32::NAN } else { data[i] })
                .collect();
            upload(&gpu, &shape, &masked)
        };
        let (k, v) = (kept(&kd), kept(&vd));
        let got = download(&attention::attend_at(&query, &k, &v, heads, position));
        for r in 0..b * c {
            assert_eq!(
                got[r].to_bits(),
                whole[r * l + position].to_bits(),
                "position {position}, row {r}"
            );
        }
    }
}
