//! adam.wgsl against a plain f64 reference of PyTorch's Adam over several steps.

mod common;
use common::*;
use vqgpu::ops::adam::{adam_step, AdamHyper};
use vqgpu::Gpu;

#[test]
fn adam_matches_reference_over_several_steps() {
    let gpu = gpu();
    let mut rng = rng(90);
    // on the CPU set a thread takes four parameters: sizes with a last unit of 1, 2, 3 and 4
    for (n, weight_decay) in [
        (1, 0.0),
        (257, 0.0),
        (1000, 0.01),
        (4098, 0.01),
        (4099, 0.0),
    ] {
        let hyper = AdamHyper {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        };
        let (params, mut p_ref) = random_tensor(&gpu, &mut rng, &[n]);
        let mut p_ref: Vec<f64> = f64s(&p_ref.split_off(0));
        let m = vqgpu::Tensor::zeros(&gpu, &[n]);
        let v = vqgpu::Tensor::zeros(&gpu, &[n]);
        let (mut m_ref, mut v_ref) = (vec![0.0f64; n], vec![0.0f64; n]);
        for t in 1..=5u64 {
            let (grads, g) = random_tensor(&gpu, &mut rng, &[n]);
            adam_step(&params, &grads, &m, &v, hyper, t);
            let (b1, b2) = (hyper.beta1 as f64, hyper.beta2 as f64);
            for i in 0..n {
                let grad = g[i] as f64 + weight_decay as f64 * p_ref[i];
                m_ref[i] = b1 * m_ref[i] + (1.0 - b1) * grad;
                v_ref[i] = b2 * v_ref[i] + (1.0 - b2) * grad * grad;
                let m_hat = m_ref[i] / (1.0 - b1.powi(t as i32));
                let v_hat = v_ref[i] / (1.0 - b2.powi(t as i32));
                p_ref[i] -= hyper.lr as f64 * m_hat / (v_hat.sqrt() + hyper.eps as f64);
            }
            assert_close(
                &download(&params),
                &p_ref,
                1e-5,
                1e-6,
                &format!("params n={n} step {t}"),
            );
            assert_close(
                &download(&m),
                &m_ref,
                1e-5,
                1e-7,
                &format!("m n={n} step {t}"),
            );
            assert_close(
                &download(&v),
                &v_ref,
                1e-5,
                1e-8,
                &format!("v n={n} step {t}"),
            );
        }
    }
}

/// Reading the four inputs from texture copies, four parameters a thread, gives the same bits as
/// reading the buffers, one parameter a thread, over three steps at sizes with a last unit of one
/// to four parameters; and the copies are made.
#[test]
fn texture_copies_and_buffer_reads_give_the_same_bits() {
    let Some([copies, buffers]) = copies_and_buffer_reads() else {
        return;
    };
    let hyper = AdamHyper {
        lr: 3e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    };
    let mut rng = rng(91);
    for n in [1, 6, 4097, 4100] {
        let start = random(&mut rng, n);
        let steps: Vec<Vec<f32>> = (0..3).map(|_| random(&mut rng, n)).collect();
        let run = |gpu: &Gpu| {
            let before = gpu.host_stats().texture_copies;
            let params = upload(gpu, &[n], &start);
            let (m, v) = (
                vqgpu::Tensor::zeros(gpu, &[n]),
                vqgpu::Tensor::zeros(gpu, &[n]),
            );
            for (t, g) in steps.iter().enumerate() {
                adam_step(&params, &upload(gpu, &[n], g), &m, &v, hyper, t as u64 + 1);
            }
            let copied = gpu.host_stats().texture_copies - before;
            ([bits(&params), bits(&m), bits(&v)], copied)
        };
        let (with_copies, copied) = run(&copies);
        let (from_buffers, not_copied) = run(&buffers);
        assert_eq!((copied, not_copied), (12, 0), "n={n}: copies made");
        assert!(
            with_copies == from_buffers,
            "n={n}: copies and buffers differ"
        );
    }
}

/// The cosine schedule's rates (full at the first step, half at the middle, near 0 at the
/// last) are the rates `Adam::step` takes, step by step, and a checkpoint brings the schedule
/// back: a checkpoint written before schedules existed as a constant rate, an unknown one refused.
#[test]
fn a_cosine_schedule_sets_the_rate_of_every_step_and_is_saved() {
    use vqgpu::io::checkpoint::Checkpoint;
    use vqgpu::nn::{Adam, LrSchedule, ParamStore};
    let gpu = gpu();
    let mut rng = rng(92);
    let (lr, steps) = (1e-2f32, 4u64);
    let expected: Vec<f32> = (1..=steps)
        .map(|t| {
            let done = (t - 1) as f64 / steps as f64;
            (0.5 * lr as f64 * (1.0 + (std::f64::consts::PI * done).cos())) as f32
        })
        .collect();
    for t in 1..=steps {
        assert_eq!(
            LrSchedule::Cosine.rate(lr, t, steps),
            expected[t as usize - 1]
        );
        assert_eq!(LrSchedule::Constant.rate(lr, t, steps), lr);
    }
    assert_eq!((expected[0], expected[2]), (lr, lr / 2.0));
    assert!(expected[3] > 0.0 && expected[3] < 0.15 * lr);

    let mut store = ParamStore::new(&gpu, 1);
    store.uniform("w", &[300], 1.0);
    store.finalize().unwrap();
    let n = store.flat_len();
    let (values, grads, _, _) = store.flat_buffers();
    let reference = upload(&gpu, &[n], &download(values));
    let (m, v) = (
        vqgpu::Tensor::zeros(&gpu, &[n]),
        vqgpu::Tensor::zeros(&gpu, &[n]),
    );
    let mut adam = Adam::new(lr);
    adam.set_schedule(LrSchedule::Cosine, steps);
    for t in 1..=steps {
        assert_eq!(adam.next_rate(), expected[t as usize - 1]);
        let g = random(&mut rng, n);
        grads.write(&g).unwrap();
        adam.step(&store);
        let hyper = AdamHyper {
            lr: expected[t as usize - 1],
            ..adam.hyper
        };
        adam_step(&reference, &upload(&gpu, &[n], &g), &m, &v, hyper, t);
        assert!(
            bits(values) == bits(&reference),
            "step {t}: Adam did not step at the scheduled rate"
        );
    }

    let mut ck = Checkpoint::default();
    adam.write_state(&store, &mut ck).unwrap();
    let read = Adam::read_state(&store, &ck).unwrap();
    assert_eq!(
        (read.schedule(), read.steps()),
        ((LrSchedule::Cosine, steps), steps)
    );
    for key in ["lr_schedule", "lr_schedule_steps"] {
        ck.metadata.remove(key);
    }
    let old = Adam::read_state(&store, &ck).unwrap();
    assert_eq!(old.schedule().0, LrSchedule::Constant);
    assert_eq!(old.next_rate(), lr);
    ck.set("lr_schedule", "cosine");
    let err = Adam::read_state(&store, &ck).err().unwrap().to_string();
    assert!(err.contains("over 0 steps"), "{err}");
    ck.set("lr_schedule", "linear");
    let err = Adam::read_state(&store, &ck).err().unwrap().to_string();
    assert!(err.contains("\"linear\""), "{err}");
}
