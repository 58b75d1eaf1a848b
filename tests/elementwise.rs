//! elementwise.wgsl against plain f64 references, and every backward against finite differences.

mod common;
use common::*;
use vqgpu::ops::elementwise as ew;
use vqgpu::{Gpu, Tensor};

/// Sizes around the 256-thread workgroup: one element, below, at and above multiples; and sizes
/// large enough for the CPU set to read texture copies by units of four, with a whole last unit
/// and with one of one element.
const SIZES: [usize; 7] = [1, 7, 256, 257, 1000, 4096, 10001];

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn unary_ops_match_reference() {
    let gpu = gpu();
    let mut rng = rng(1);
    type Op = fn(&Tensor) -> Tensor;
    type Reference = fn(f64) -> f64;
    let cases: [(&str, Op, Reference); 5] = [
        ("relu", ew::relu, |x| x.max(0.0)),
        ("sigmoid", ew::sigmoid, sigmoid),
        ("tanh", ew::tanh, f64::tanh),
        ("copy", ew::copy, |x| x),
        ("scale", |t| ew::affine(t, -2.5, 0.75), |x| -2.5 * x + 0.75),
    ];
    for n in SIZES {
        let (x, xs) = random_tensor(&gpu, &mut rng, &[n]);
        let xs: Vec<f32> = xs.iter().map(|v| v * 6.0).collect();
        x.write(&xs).unwrap();
        for (name, op, reference) in cases {
            let want: Vec<f64> = xs.iter().map(|&v| reference(v as f64)).collect();
            assert_close(
                &download(&op(&x)),
                &want,
                1e-5,
                1e-6,
                &format!("{name} n={n}"),
            );
        }
    }
}

#[test]
fn activations_stay_finite_for_extreme_inputs() {
    let gpu = gpu();
    let xs = [-1e30f32, -100.0, -20.0, 0.0, 20.0, 100.0, 1e30];
    let x = upload(&gpu, &[xs.len()], &xs);
    let sig: Vec<f64> = xs.iter().map(|&v| sigmoid(v as f64)).collect();
    let tanh: Vec<f64> = xs.iter().map(|&v| (v as f64).tanh()).collect();
    assert_close(
        &download(&ew::sigmoid(&x)),
        &sig,
        1e-6,
        1e-7,
        "sigmoid extremes",
    );
    assert_close(&download(&ew::tanh(&x)), &tanh, 1e-6, 1e-6, "tanh extremes");
}

#[test]
fn binary_ops_fill_and_accumulate_match_reference() {
    let gpu = gpu();
    let mut rng = rng(2);
    for n in SIZES {
        let (a, av) = random_tensor(&gpu, &mut rng, &[n]);
        let (b, bv) = random_tensor(&gpu, &mut rng, &[n]);
        let pairs = av.iter().zip(&bv).map(|(&x, &y)| (x as f64, y as f64));
        let add: Vec<f64> = pairs.clone().map(|(x, y)| x + y).collect();
        let sub: Vec<f64> = pairs.clone().map(|(x, y)| x - y).collect();
        let mul: Vec<f64> = pairs.clone().map(|(x, y)| x * y).collect();
        let acc: Vec<f64> = pairs.map(|(x, y)| x + 0.5 * y).collect();
        assert_close(&download(&a.add(&b)), &add, 1e-6, 1e-7, "add");
        assert_close(&download(&a.sub(&b)), &sub, 1e-6, 1e-7, "sub");
        assert_close(&download(&a.mul(&b)), &mul, 1e-6, 1e-7, "mul");
        let dst = ew::copy(&a);
        ew::accumulate(&dst, &b, 0.5);
        assert_close(&download(&dst), &acc, 1e-6, 1e-7, "accumulate");
        ew::fill(&dst, 3.25);
        assert_close(&download(&dst), &vec![3.25; n], 0.0, 0.0, "fill");
        assert_close(
            &download(&Tensor::zeros(&gpu, &[n])),
            &vec![0.0; n],
            0.0,
            0.0,
            "zeros",
        );
    }
}

#[test]
fn per_channel_bias_broadcasts_over_batch_and_space() {
    let gpu = gpu();
    let mut rng = rng(3);
    for shape in [[1, 1, 1, 1], [2, 3, 4, 5], [3, 70, 1, 3], [1, 5, 17, 1]] {
        let (x, xv) = random_tensor(&gpu, &mut rng, &shape);
        let (b, bv) = random_tensor(&gpu, &mut rng, &[shape[1]]);
        let plane = shape[2] * shape[3];
        let want: Vec<f64> = xv
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f64 + bv[(i / plane) % shape[1]] as f64)
            .collect();
        assert_close(
            &download(&x.add(&b)),
            &want,
            1e-6,
            1e-7,
            &format!("bias {shape:?}"),
        );
    }
    // 2-D [batch, features] + [features]
    let (x, xv) = random_tensor(&gpu, &mut rng, &[3, 4]);
    let (b, bv) = random_tensor(&gpu, &mut rng, &[4]);
    let want: Vec<f64> = xv
        .iter()
        .enumerate()
        .map(|(i, &v)| (v + bv[i % 4]) as f64)
        .collect();
    assert_close(&download(&x.add(&b)), &want, 1e-6, 1e-7, "bias 2-D");
}

#[test]
fn elementwise_backwards_match_finite_differences() {
    let gpu = gpu();
    let mut rng = rng(4);
    let shape = vec![2, 3, 4, 5];
    let n = 120;
    // keep ReLU inputs away from the kink so the finite difference is well defined
    let away_from_zero: Vec<f32> = random(&mut rng, n)
        .iter()
        .map(|v| if v.abs() < 0.1 { v + 0.3 } else { *v })
        .collect();
    let a = (shape.clone(), random(&mut rng, n));
    let b = (shape.clone(), random(&mut rng, n));
    let bias = (vec![3], random(&mut rng, 3));
    let tol = 2e-2;
    grad_check(
        &gpu,
        &[(shape.clone(), away_from_zero)],
        &|t| t[0].relu(),
        40,
        1e-2,
        tol,
        "relu",
    );
    grad_check(
        &gpu,
        std::slice::from_ref(&a),
        &|t| t[0].sigmoid(),
        40,
        1e-2,
        tol,
        "sigmoid",
    );
    grad_check(
        &gpu,
        std::slice::from_ref(&a),
        &|t| t[0].tanh(),
        40,
        1e-2,
        tol,
        "tanh",
    );
    grad_check(
        &gpu,
        std::slice::from_ref(&a),
        &|t| ew::affine(&t[0], 1.5, -0.5),
        20,
        1e-2,
        tol,
        "scale",
    );
    grad_check(
        &gpu,
        std::slice::from_ref(&a),
        &|t| ew::copy(&t[0]),
        20,
        1e-2,
        tol,
        "copy",
    );
    grad_check(
        &gpu,
        &[a.clone(), b.clone()],
        &|t| t[0].add(&t[1]),
        20,
        1e-2,
        tol,
        "add",
    );
    grad_check(
        &gpu,
        &[a.clone(), b.clone()],
        &|t| t[0].sub(&t[1]),
        20,
        1e-2,
        tol,
        "sub",
    );
    grad_check(
        &gpu,
        &[a.clone(), b],
        &|t| t[0].mul(&t[1]),
        40,
        1e-2,
        tol,
        "mul",
    );
    grad_check(
        &gpu,
        &[a.clone(), bias],
        &|t| t[0].add(&t[1]),
        40,
        1e-2,
        tol,
        "bias",
    );
    // a tensor used twice accumulates both paths: d(x * x) = 2x
    grad_check(
        &gpu,
        std::slice::from_ref(&a),
        &|t| t[0].mul(&t[0]),
        40,
        1e-2,
        tol,
        "x*x",
    );
    grad_check(
        &gpu,
        &[a],
        &|t| t[0].reshape(&[6, 20]).tanh(),
        20,
        1e-2,
        tol,
        "reshape",
    );
}

/// f64 reference of the gate: x [n, 2c, s] -> tanh(first half) * sigmoid(second half).
fn gate_reference(xs: &[f32], n: usize, c: usize, s: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n * c * s);
    for b in 0..n {
        for ch in 0..c {
            for i in 0..s {
                let a = xs[(b * 2 * c + ch) * s + i] as f64;
                let g = xs[(b * 2 * c + c + ch) * s + i] as f64;
                out.push(a.tanh() * sigmoid(g));
            }
        }
    }
    out
}

#[test]
fn gate_matches_reference_and_finite_differences() {
    let gpu = gpu();
    let mut rng = rng(5);
    // shapes with output sizes below, at and above the 256-thread workgroup, odd channel counts
    for (n, c, h, w) in [(1, 1, 1, 1), (2, 3, 5, 7), (1, 64, 2, 2), (3, 5, 9, 11)] {
        let shape = [n, 2 * c, h, w];
        let (x, xs) = random_tensor(&gpu, &mut rng, &shape);
        let xs: Vec<f32> = xs.iter().map(|v| v * 4.0).collect();
        x.write(&xs).unwrap();
        let y = ew::gate(&x);
        assert_eq!(y.shape(), [n, c, h, w]);
        assert_close(
            &download(&y),
            &gate_reference(&xs, n, c, h * w),
            1e-5,
            1e-6,
            &format!("gate {shape:?}"),
        );
    }
    let shape = vec![2, 6, 3, 4];
    let xs = random(&mut rng, 144);
    grad_check(
        &gpu,
        &[(shape, xs)],
        &|t| ew::gate(&t[0]),
        60,
        1e-2,
        2e-2,
        "gate",
    );
}

/// [N, Ca + Cb, S] from a [N, Ca, S] and b [N, Cb, S], in f64.
fn concat_reference(a: &[f32], b: &[f32], n: usize, ca: usize, cb: usize, s: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n * (ca + cb) * s);
    for i in 0..n {
        out.extend(a[i * ca * s..(i + 1) * ca * s].iter().map(|&v| v as f64));
        out.extend(b[i * cb * s..(i + 1) * cb * s].iter().map(|&v| v as f64));
    }
    out
}

#[test]
fn channel_concatenation_matches_reference_and_finite_differences() {
    let gpu = gpu();
    let mut rng = rng(6);
    // outputs below, at and above the 256-thread workgroup; one-channel parts; 1-D and 3-D planes
    for (n, ca, cb, spatial) in [
        (1, 1, 1, vec![1, 1]),
        (2, 3, 5, vec![4, 5]),
        (1, 64, 64, vec![2, 1]),
        (3, 7, 1, vec![9, 11]),
        (2, 2, 3, vec![5]),
    ] {
        let s: usize = spatial.iter().product();
        let shape = |c: usize| [&[n, c][..], &spatial].concat();
        let (a, av) = random_tensor(&gpu, &mut rng, &shape(ca));
        let (b, bv) = random_tensor(&gpu, &mut rng, &shape(cb));
        let y = ew::concat_channels(&a, &b);
        assert_eq!(y.shape(), shape(ca + cb));
        assert_close(
            &download(&y),
            &concat_reference(&av, &bv, n, ca, cb, s),
            0.0,
            0.0,
            &format!("concat {n}x({ca}+{cb})x{spatial:?}"),
        );
    }
    grad_check(
        &gpu,
        &[
            (vec![2, 3, 4, 5], random(&mut rng, 120)),
            (vec![2, 2, 4, 5], random(&mut rng, 80)),
        ],
        &|t| ew::concat_channels(&t[0], &t[1]),
        200,
        1e-2,
        1e-3,
        "concat_channels",
    );
}

#[test]
fn bytes_become_exactly_the_hosts_inputs_on_the_gpu() {
    use vqgpu::data::to_input;
    use vqgpu::tensor::ByteBuffer;
    use vqgpu::train::PixelInput;
    let gpu = gpu();
    // lengths that are not whole words or whole workgroups, and every byte value in every lane
    for len in [1usize, 3, 5, 256, 1027, 3 * 32 * 32 * 3 + 1] {
        let bytes: Vec<u8> = (0..len).map(|i| ((i * 37 + i / 256) % 256) as u8).collect();
        let mut expected = vec![0.0f32; len];
        to_input(&bytes, &mut expected);
        let input = PixelInput::new(&gpu, &[len]).unwrap();
        let got = input.upload(&bytes).unwrap().to_vec().unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&expected), "{len} bytes");
        // a second upload replaces the first
        let reversed: Vec<u8> = bytes.iter().rev().copied().collect();
        to_input(&reversed, &mut expected);
        let got = input.upload(&reversed).unwrap().to_vec().unwrap();
        assert_eq!(bits(&got), bits(&expected), "{len} bytes, second upload");
    }
    let all: Vec<u8> = (0..=255).collect();
    let table = PixelInput::new(&gpu, &[256]).unwrap();
    let got = table.upload(&all).unwrap().to_vec().unwrap();
    assert!(got
        .iter()
        .zip(&all)
        .all(|(&v, &b)| v == b as f32 / 255.0 - 0.5));
    // a batch of another size is refused
    let buffer = ByteBuffer::new(&gpu, 8);
    assert!(buffer.write(&[0u8; 7]).is_err());
    assert!(table.upload(&all[..255]).is_err());
}

/// The kernels that work by units give the same bits reading texture copies, four elements a
/// thread, as reading buffers, one element a thread: at sizes with a whole last unit and with a
/// last unit of one, two and three elements; forward and backward. And the copies are made.
#[test]
fn texture_copies_and_buffer_reads_give_the_same_bits() {
    let Some([copies, buffers]) = copies_and_buffer_reads() else {
        return;
    };
    let mut rng = rng(8);
    for n in [4096, 4097, 4098, 4099] {
        let xv: Vec<f32> = random(&mut rng, n).iter().map(|v| v * 6.0).collect();
        let bv = random(&mut rng, n);
        let rv = random(&mut rng, n);
        let results = |gpu: &Gpu| {
            let before = gpu.host_stats().texture_copies;
            let x = upload(gpu, &[n], &xv).with_requires_grad(true);
            let b = upload(gpu, &[n], &bv);
            let r = upload(gpu, &[n], &rv);
            let acc = ew::copy(&x.detach());
            ew::accumulate(&acc, &b, 0.5);
            let outputs = [
                x.relu(),
                x.sigmoid(),
                x.tanh(),
                ew::copy(&x),
                ew::affine(&x, -2.5, 0.75),
                ew::add_scaled(&x, &b, 0.5, -1.5),
                x.mul(&b),
                acc,
            ];
            let loss = outputs[..3]
                .iter()
                .map(|y| y.mul(&r).sum())
                .reduce(|s, t| s.add(&t))
                .expect("three terms");
            let grad = loss.backward().get(&x).expect("a gradient for x");
            let copied = gpu.host_stats().texture_copies - before;
            let bits: Vec<Vec<u32>> = outputs.iter().chain([&grad]).map(bits).collect();
            (bits, copied)
        };
        let (with_copies, copied) = results(&copies);
        let (from_buffers, not_copied) = results(&buffers);
        assert!(copied >= 12, "n={n}: only {copied} texture copies");
        assert_eq!(not_copied, 0, "n={n}: copies made without them");
        for (i, (c, b)) in with_copies.iter().zip(&from_buffers).enumerate() {
            assert!(
                c == b,
                "n={n}: result {i} differs between copies and buffers"
            );
        }
    }
    // the gate both ways and a slice of channels (the backward of a concatenation), on planes
    // of whole units
    let xv = random(&mut rng, 2 * 64 * 64);
    let (av, bv) = (random(&mut rng, 4 * 24 * 64), random(&mut rng, 4 * 40 * 64));
    let results = |gpu: &Gpu| {
        let before = gpu.host_stats().texture_copies;
        let x = upload(gpu, &[2, 64, 8, 8], &xv).with_requires_grad(true);
        let a = upload(gpu, &[4, 24, 8, 8], &av).with_requires_grad(true);
        let b = upload(gpu, &[4, 40, 8, 8], &bv).with_requires_grad(true);
        let y = ew::gate(&x);
        let joined = ew::concat_channels(&a, &b);
        let loss = y.mul(&y).sum().add(&joined.mul(&joined).sum());
        let grads = loss.backward();
        let gradient = |t: &Tensor| bits(&grads.get(t).expect("a gradient"));
        let copied = gpu.host_stats().texture_copies - before;
        ([bits(&y), gradient(&x), gradient(&a), gradient(&b)], copied)
    };
    let (with_copies, copied) = results(&copies);
    assert!(copied >= 4, "only {copied} texture copies");
    assert!(
        with_copies == results(&buffers).0,
        "gate or slice differs between copies and buffers"
    );
}
