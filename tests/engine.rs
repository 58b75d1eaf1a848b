//! The engine as a whole: autograd semantics, parameter store, recording without per-op submits,
//! no allocation after warm-up, a small conv net that learns, and the error paths.

mod common;
use common::*;
use vqgpu::gpu::HostStats;
use vqgpu::nn::{Adam, Conv2d, ConvTranspose2d, Linear, ParamStore};
use vqgpu::ops::conv::{conv2d, conv_transpose2d, Conv2dOptions, ConvTranspose2dOptions};
use vqgpu::ops::reduce::mse_loss;
use vqgpu::{autograd, Error, Gpu, GpuOptions, Tensor};

#[test]
fn no_grad_records_nothing_and_detach_stops_gradients() {
    let gpu = gpu();
    let x = upload(&gpu, &[3], &[1.0, -2.0, 3.0]).with_requires_grad(true);
    {
        let _guard = autograd::no_grad();
        let y = x.mul(&x).sum();
        assert!(!y.requires_grad());
        assert_eq!(autograd::tape_len(), 0);
    }
    assert!(autograd::is_grad_enabled());
    // loss = sum(x * detach(x)): the gradient is detach(x) only, not 2x
    let loss = x.mul(&x.detach()).sum();
    let grads = loss.backward();
    assert_eq!(download(&grads.get(&x).unwrap()), [1.0, -2.0, 3.0]);
    assert_eq!(autograd::tape_len(), 0, "backward consumes the tape");
}

#[test]
fn parameters_accumulate_gradients_until_zeroed() {
    let gpu = gpu();
    let mut ps = ParamStore::new(&gpu, 0);
    let w = ps.from_values("w", &[2], vec![2.0, -1.0]);
    let b = ps.constant("b", &[1], 0.5);
    ps.finalize().unwrap();
    let x = upload(&gpu, &[2], &[3.0, 4.0]);
    for expected_scale in [1.0, 2.0] {
        // d/dw sum(w * x) = x; d/db sum(b) = 1; a second backward adds on top
        w.tensor().mul(&x).sum().add(&b.tensor().sum()).backward();
        assert_eq!(
            download(&ps.grad(&w)),
            [3.0 * expected_scale, 4.0 * expected_scale]
        );
        assert_eq!(download(&ps.grad(&b)), [expected_scale]);
    }
    ps.zero_grad();
    assert_eq!(download(&ps.grad(&w)), [0.0, 0.0]);
    assert_eq!(download(w.tensor()), [2.0, -1.0]);
}

#[test]
fn layers_follow_pytorch_names_layouts_and_initialisation() {
    let gpu = gpu();
    let mut ps = ParamStore::new(&gpu, 1);
    let conv = Conv2d::new(
        &mut ps.scope("encoder.0"),
        3,
        8,
        (4, 4),
        Conv2dOptions::new(2, 1),
        true,
    );
    let convt = ConvTranspose2d::new(
        &mut ps.scope("decoder.2"),
        8,
        5,
        (4, 4),
        ConvTranspose2dOptions::new(2, 1, 0),
        true,
    );
    let lin = Linear::new(&mut ps.scope("fc"), 10, 7, false);
    ps.finalize().unwrap();
    let names: Vec<(&str, Vec<usize>)> = ps
        .params()
        .iter()
        .map(|p| (p.name(), p.shape().to_vec()))
        .collect();
    assert_eq!(
        names,
        [
            ("encoder.0.weight", vec![8, 3, 4, 4]),
            ("encoder.0.bias", vec![8]),
            ("decoder.2.weight", vec![8, 5, 4, 4]),
            ("decoder.2.bias", vec![5]),
            ("fc.weight", vec![7, 10]),
        ]
    );
    // kaiming-uniform(a = sqrt 5): U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in of a transposed conv is out * k * k
    for (p, fan_in) in ps.params().iter().zip([48.0f32, 48.0, 80.0, 80.0, 10.0]) {
        let v = download(p.tensor());
        let bound = 1.0 / fan_in.sqrt();
        assert!(
            v.iter().all(|x| x.abs() <= bound),
            "{} exceeds its bound",
            p.name()
        );
        assert!(
            v.iter().any(|x| x.abs() > bound / 2.0),
            "{} is not spread over its range",
            p.name()
        );
    }
    let x = Tensor::zeros(&gpu, &[2, 3, 8, 8]);
    let h = conv.forward(&x);
    assert_eq!(h.shape(), [2, 8, 4, 4]);
    assert_eq!(convt.forward(&h).shape(), [2, 5, 8, 8]);
    assert_eq!(lin.forward(&Tensor::zeros(&gpu, &[4, 10])).shape(), [4, 7]);
    // same seed, same initial values
    let mut again = ParamStore::new(&gpu, 1);
    let conv2 = Conv2d::new(
        &mut again.scope("encoder.0"),
        3,
        8,
        (4, 4),
        Conv2dOptions::new(2, 1),
        true,
    );
    again.finalize().unwrap();
    assert_eq!(
        download(conv.weight.tensor()),
        download(conv2.weight.tensor())
    );
}

/// A two-layer conv net (conv 3->16, ReLU, conv 16->3) learning to reproduce its input.
struct TinyNet {
    ps: ParamStore,
    conv1: Conv2d,
    conv2: Conv2d,
}

impl TinyNet {
    fn new(gpu: &Gpu) -> Self {
        let mut ps = ParamStore::new(gpu, 42);
        let conv1 = Conv2d::new(
            &mut ps.scope("conv1"),
            3,
            16,
            (3, 3),
            Conv2dOptions::new(1, 1),
            true,
        );
        let conv2 = Conv2d::new(
            &mut ps.scope("conv2"),
            16,
            3,
            (3, 3),
            Conv2dOptions::new(1, 1),
            true,
        );
        ps.finalize().unwrap();
        Self { ps, conv1, conv2 }
    }

    fn loss(&self, x: &Tensor) -> Tensor {
        mse_loss(&self.conv2.forward(&self.conv1.forward(x).relu()), x)
    }

    fn step(&self, adam: &mut Adam, x: &Tensor) -> Tensor {
        self.ps.zero_grad();
        let loss = self.loss(x);
        loss.backward();
        adam.step(&self.ps);
        loss
    }
}

#[test]
fn two_layer_conv_net_cuts_its_mse_tenfold_in_200_adam_steps() {
    let gpu = gpu();
    let mut rng = rng(100);
    let (x, _) = random_tensor(&gpu, &mut rng, &[4, 3, 8, 8]);
    let net = TinyNet::new(&gpu);
    let mut adam = Adam::new(1e-2);
    let first = net.loss(&x).item().unwrap();
    autograd::clear_tape();
    let mut last = first;
    for step in 0..200 {
        let loss = net.step(&mut adam, &x);
        if step % 50 == 49 {
            last = loss.item().unwrap();
            println!("step {}: mse {last}", step + 1);
        }
    }
    let _g = autograd::no_grad();
    last = last.min(net.loss(&x).item().unwrap());
    println!("mse {first} -> {last}");
    assert!(first / last >= 10.0, "MSE fell only from {first} to {last}");
}

#[test]
fn a_training_step_submits_once_and_allocates_nothing_after_warm_up() {
    let gpu = gpu();
    let mut rng = rng(101);
    let (x, _) = random_tensor(&gpu, &mut rng, &[2, 3, 8, 8]);
    let net = TinyNet::new(&gpu);
    let mut adam = Adam::new(1e-3);
    net.step(&mut adam, &x).item().unwrap(); // warm-up: compiles pipelines, fills the pool
    let buffers = gpu.buffers_created();
    let pipelines = gpu.pipelines_compiled();
    for _ in 0..3 {
        let submits = gpu.submissions();
        let loss = net.step(&mut adam, &x);
        assert_eq!(
            gpu.submissions(),
            submits,
            "forward, backward and Adam must only record"
        );
        loss.item().unwrap();
        assert_eq!(
            gpu.submissions(),
            submits + 1,
            "the readback is the step's one submit"
        );
    }
    assert_eq!(
        gpu.buffers_created(),
        buffers,
        "create_buffer was called after warm-up"
    );
    assert_eq!(
        gpu.pipelines_compiled(),
        pipelines,
        "a pipeline was compiled after warm-up"
    );
}

/// The host-side counts of what a computation recorded (what does not depend on caches).
fn recorded(s: HostStats) -> [u64; 6] {
    [
        s.dispatches,
        s.passes,
        s.submissions,
        s.texture_copies,
        s.copies_reused,
        s.passes_ended_by_copies,
    ]
}

#[test]
fn launches_held_back_for_new_pipelines_record_what_later_launches_record() {
    let gpu = gpu();
    let mut rng = rng(103);
    let (x, _) = random_tensor(&gpu, &mut rng, &[2, 3, 9, 7]);
    let net = TinyNet::new(&gpu);
    // forward and backward, recorded without a submit until the loss is read back; the first run
    // makes its pipelines all at once at that submit, holding back every launch and copy until
    // then, and a later run records them as they come
    let run = || {
        let before = gpu.host_stats();
        net.ps.zero_grad();
        let loss = net.loss(&x);
        loss.backward();
        let loss = loss.item().unwrap();
        let grads = download(net.ps.flat_buffers().1);
        (gpu.host_stats() - before, loss, grads)
    };
    let pipelines = gpu.pipelines_compiled();
    let (first, first_loss, first_grads) = run();
    assert!(
        gpu.pipelines_compiled() > pipelines,
        "the first run made no new pipeline"
    );
    let pipelines = gpu.pipelines_compiled();
    let (later, later_loss, later_grads) = run();
    assert_eq!(gpu.pipelines_compiled(), pipelines);
    assert_eq!(
        recorded(first),
        recorded(later),
        "{first:?} against {later:?}"
    );
    assert_eq!(first_loss.to_bits(), later_loss.to_bits());
    assert_eq!(bits(&first_grads), bits(&later_grads));
}

#[test]
fn a_buffer_goes_back_to_the_pool_only_with_the_last_tensor_that_shares_it() {
    let gpu = gpu();
    // warm-up in another size class: the kernel parameter arena and a readback buffer
    Tensor::zeros(&gpu, &[1000]).to_vec().unwrap();
    let values: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let original = Tensor::from_slice(&gpu, &[64], &values).unwrap();
    let reshaped = original.reshape(&[8, 8]);
    let detached = original.detach();
    drop(original);
    drop(detached);
    // the buffer is still the reshape's: a new tensor of its size must get another one
    let other = Tensor::from_slice(&gpu, &[64], &[-1.0; 64]).unwrap();
    assert_eq!(reshaped.to_vec().unwrap(), values);
    drop(other);
    drop(reshaped);
    // and once the last is dropped, both buffers are free again: nothing new is created
    let buffers = gpu.buffers_created();
    let again = (Tensor::zeros(&gpu, &[64]), Tensor::zeros(&gpu, &[8, 8]));
    assert_eq!(again.0.to_vec().unwrap(), vec![0.0; 64]);
    assert_eq!(
        gpu.buffers_created(),
        buffers,
        "a freed buffer was not reused"
    );
}

#[test]
fn same_seed_same_bits() {
    let run = || {
        let gpu = gpu();
        let mut rng = rng(102);
        let (x, _) = random_tensor(&gpu, &mut rng, &[2, 3, 8, 8]);
        let net = TinyNet::new(&gpu);
        let mut adam = Adam::new(1e-2);
        for _ in 0..5 {
            net.step(&mut adam, &x);
        }
        download(net.ps.flat_buffers().0)
    };
    assert_eq!(run(), run());
}

#[test]
fn collectives_over_impossible_lanes_are_a_clear_error() {
    use vqgpu::gpu::Collectives;
    for lanes in [3, 256] {
        let err = Gpu::new(&GpuOptions {
            collectives: Some(Collectives::Subgroups(lanes)),
            ..GpuOptions::default()
        })
        .err()
        .expect("must fail");
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{lanes} subgroup lanes")) && msg.contains("power of two"),
            "{msg}"
        );
    }
}

#[test]
fn unknown_adapter_is_a_clear_error() {
    let err = Gpu::new(&GpuOptions {
        adapter: Some("no-such-adapter-xyz".into()),
        ..GpuOptions::default()
    })
    .err()
    .expect("must fail");
    assert!(matches!(err, Error::AdapterNotFound { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("no-such-adapter-xyz") && msg.contains("vqgpu info"),
        "{msg}"
    );
}

#[cfg(not(any(target_os = "macos", target_os = "ios")))]
#[test]
fn missing_backend_names_the_fix() {
    // Metal exists only on Apple platforms: asking for it elsewhere finds no adapter at all
    let err = Gpu::new(&GpuOptions {
        backend: Some(vqgpu::gpu::Backend::Metal),
        ..GpuOptions::default()
    })
    .err()
    .expect("must fail");
    assert!(matches!(err, Error::NoAdapter { .. }), "{err}");
    // installing Mesa would not help: the advice is about the backend
    let msg = err.to_string();
    assert!(
        msg.contains("Metal runs on macOS") && !msg.contains("mesa"),
        "{msg}"
    );
    assert!(msg.starts_with("no GPU adapter found for Metal."), "{msg}");
}

#[test]
fn an_oversized_buffer_is_reported_at_the_next_sync() {
    let gpu = gpu();
    let floats = (gpu.max_binding_bytes() / 4 + 1) as usize;
    let t = Tensor::uninit(&gpu, &[floats]);
    let err = gpu.sync().expect_err("must fail");
    assert!(matches!(err, Error::BufferTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("smaller batch"), "{err}");
    drop(t);
    gpu.sync().expect("the error is reported once");
}

#[test]
fn shape_and_data_mismatch_is_an_error() {
    let gpu = gpu();
    let err = Tensor::from_slice(&gpu, &[2, 3], &[1.0; 5]).expect_err("must fail");
    assert!(
        matches!(
            err,
            Error::ShapeData {
                expected: 6,
                got: 5,
                ..
            }
        ),
        "{err}"
    );
}

/// A parameter's first gradient of a pass is written straight into its zero slot by the
/// convolutions; it must equal, bit for bit, the gradient the plain path computes for the same
/// tensor as an ordinary leaf, a parameter used twice must get the sum of both uses in the order
/// of the backward pass, and a second pass without `zero_grad` must add to the slots.
#[test]
fn convolution_gradients_written_into_their_slots_equal_the_added_ones() {
    for gpu in kernel_set_gpus() {
        let mut ps = ParamStore::new(&gpu, 3);
        let same = Conv2dOptions::new(1, 1);
        let pointwise = Conv2dOptions::new(1, 0);
        let up_options = ConvTranspose2dOptions::new(2, 1, 0);
        // 40 output channels: the CPU set's tall product; the pointwise layer is used twice
        let wide = Conv2d::new(&mut ps.scope("wide"), 6, 40, (3, 3), same, true);
        let shared = Conv2d::new(&mut ps.scope("shared"), 40, 40, (1, 1), pointwise, true);
        let up = ConvTranspose2d::new(&mut ps.scope("up"), 40, 5, (4, 4), up_options, true);
        ps.finalize().unwrap();
        let mut r = rng(17);
        let (x, _) = random_tensor(&gpu, &mut r, &[3, 6, 9, 7]);
        let (weights, _) = random_tensor(&gpu, &mut r, &[3, 5, 18, 14]);
        // the network on given tensors: t[2], t[3] for the first use of the pointwise layer,
        // t[6], t[7] for the second
        let net = |t: &[Tensor]| {
            let h = conv2d(&x, &t[0], Some(&t[1]), same);
            let h = conv2d(&h, &t[2], Some(&t[3]), pointwise).relu();
            let h = conv2d(&h, &t[6], Some(&t[7]), pointwise);
            conv_transpose2d(&h, &t[4], Some(&t[5]), up_options)
                .mul(&weights)
                .sum()
        };
        let params = [
            &wide.weight,
            wide.bias.as_ref().unwrap(),
            &shared.weight,
            shared.bias.as_ref().unwrap(),
            &up.weight,
            up.bias.as_ref().unwrap(),
        ];
        let uses: Vec<Tensor> = [0, 1, 2, 3, 4, 5, 2, 3]
            .iter()
            .map(|&i| params[i].tensor().clone())
            .collect();
        // each use as an ordinary leaf: its own gradient
        let leaves: Vec<Tensor> = uses
            .iter()
            .map(|t| t.detach().with_requires_grad(true))
            .collect();
        let grads = net(&leaves).backward();
        let per_use: Vec<Vec<f32>> = leaves
            .iter()
            .map(|l| download(&grads.get(l).unwrap()))
            .collect();
        // backward reaches the second use first: its gradient is written, the first one's added
        let add = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x + y).collect::<Vec<_>>();
        let expected: Vec<Vec<f32>> = (0..6)
            .map(|i| match i {
                2 | 3 => add(&per_use[i + 4], &per_use[i]),
                _ => per_use[i].clone(),
            })
            .collect();
        ps.zero_grad();
        net(&uses).backward();
        for (p, want) in params.iter().zip(&expected) {
            assert_eq!(bits(&download(&ps.grad(p))), bits(want), "{}", p.name());
        }
        // without zero_grad the next pass adds to the slots, in the same order
        net(&uses).backward();
        for (i, (p, first)) in params.iter().zip(&expected).enumerate() {
            let again = match i {
                2 | 3 => add(&add(first, &per_use[i + 4]), &per_use[i]),
                _ => add(first, first),
            };
            assert_eq!(
                bits(&download(&ps.grad(p))),
                bits(&again),
                "{} again",
                p.name()
            );
        }
    }
}

/// The same for a linear layer's weight and bias.
#[test]
fn linear_gradients_written_into_their_slots_equal_the_added_ones() {
    for gpu in kernel_set_gpus() {
        let mut ps = ParamStore::new(&gpu, 4);
        // 40 rows of x: the CPU set's tall product for the weight gradient
        let layer = Linear::new(&mut ps.scope("fc"), 7, 33, true);
        ps.finalize().unwrap();
        let mut r = rng(18);
        let (x, _) = random_tensor(&gpu, &mut r, &[40, 7]);
        let (weights, _) = random_tensor(&gpu, &mut r, &[40, 33]);
        let net =
            |w: &Tensor, b: &Tensor| vqgpu::ops::gemm::linear(&x, w, Some(b)).mul(&weights).sum();
        let params = [&layer.weight, layer.bias.as_ref().unwrap()];
        let leaves: Vec<Tensor> = params
            .iter()
            .map(|p| p.tensor().detach().with_requires_grad(true))
            .collect();
        let grads = net(&leaves[0], &leaves[1]).backward();
        ps.zero_grad();
        for pass in 1..=2 {
            net(params[0].tensor(), params[1].tensor()).backward();
            for (p, leaf) in params.iter().zip(&leaves) {
                let once = download(&grads.get(leaf).unwrap());
                let want: Vec<f32> = once.iter().map(|&g| g * pass as f32).collect();
                assert_eq!(
                    bits(&download(&ps.grad(p))),
                    bits(&want),
                    "{} after {pass} passes",
                    p.name()
                );
            }
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
