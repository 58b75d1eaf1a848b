//! Helpers shared by the GPU tests: the adapter, seeded random data, tolerant comparison and a
//! central finite-difference gradient check.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vqgpu::models::vqvae::VqVaeConfig;
use vqgpu::{autograd, Gpu, GpuOptions, Tensor};

/// The adapter named by `VQGPU_ADAPTER` (or the default); fails the test when there is none.
pub fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default()).unwrap_or_else(no_adapter)
}

/// The adapter once per way of compiling the collective operations (`vqgpu::gpu::Collectives`):
/// through workgroup memory, and over every power of two of subgroup lanes from 2 to its smallest
/// subgroup. A CPU adapter (lavapipe) has subgroups and must run them. Each runs the GPU kernel
/// set, whose per-code sums call the collectives too.
pub fn collective_gpus() -> Vec<Gpu> {
    use vqgpu::gpu::{Collectives, KernelSet};
    let open = |collectives| {
        Gpu::new(&GpuOptions {
            kernels: Some(KernelSet::Gpu),
            collectives: Some(collectives),
            ..GpuOptions::default()
        })
        .unwrap_or_else(no_adapter)
    };
    let plain = open(Collectives::Plain);
    let report = plain.report();
    let smallest = if report.features.subgroups {
        report
            .info
            .subgroup_min_size
            .min(vqgpu::gpu::MAX_COLLECTIVE_LANES)
    } else {
        0
    };
    assert!(
        report.info.device_type != vqgpu::gpu::DeviceType::Cpu || smallest >= 2,
        "a CPU adapter must have subgroups to test the subgroup collectives on"
    );
    let mut gpus = vec![plain];
    let mut lanes = 2;
    while lanes <= smallest {
        gpus.push(open(Collectives::Subgroups(lanes)));
        lanes *= 2;
    }
    gpus
}

/// Runs `results` on every adapter of [`collective_gpus`] and asserts that each gives the bits
/// that the collectives through workgroup memory give.
pub fn assert_same_bits_over_collectives<const N: usize>(results: impl Fn(&Gpu) -> [Vec<f32>; N]) {
    let bits = |gpu: &Gpu| results(gpu).map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    let gpus = collective_gpus();
    let plain = bits(&gpus[0]);
    for gpu in &gpus[1..] {
        assert_eq!(
            bits(gpu),
            plain,
            "{} against workgroup memory",
            gpu.collectives()
        );
    }
}

/// Fails the test for want of an adapter, saying how to get one.
fn no_adapter(e: vqgpu::Error) -> Gpu {
    panic!("GPU tests need an adapter: {e}\n(on Linux without a GPU: apt-get install mesa-vulkan-drivers)")
}

/// A VQ-VAE small enough for a few quick steps on the software driver (3x32x32 images).
pub fn tiny_vqvae() -> VqVaeConfig {
    VqVaeConfig {
        hidden: 8,
        res_hidden: 4,
        res_layers: 1,
        codebook_size: 16,
        code_dim: 4,
        ..VqVaeConfig::default()
    }
}

/// A small VQ-VAE (RGB, one residual layer of hidden / 2 channels, EMA with restarts after 20
/// idle steps) of `hidden` channels and `codes` codes of `dim` dimensions.
pub fn small_vqvae(hidden: usize, codes: usize, dim: usize) -> VqVaeConfig {
    VqVaeConfig {
        hidden,
        res_hidden: hidden / 2,
        res_layers: 1,
        codebook_size: codes,
        code_dim: dim,
        ..VqVaeConfig::default()
    }
}

/// A seeded RNG.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `n` values uniform in [-1, 1).
pub fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Uploads `data` with `shape`.
pub fn upload(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_slice(gpu, shape, data).expect("upload")
}

/// A random tensor and its host copy.
pub fn random_tensor(gpu: &Gpu, rng: &mut ChaCha8Rng, shape: &[usize]) -> (Tensor, Vec<f32>) {
    let data = random(rng, shape.iter().product());
    (upload(gpu, shape, &data), data)
}

/// Downloads a tensor.
pub fn download(t: &Tensor) -> Vec<f32> {
    t.to_vec().expect("download")
}

/// Asserts `|got - want| <= atol + rtol * |want|` elementwise.
pub fn assert_close(got: &[f32], want: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let excess = err - (atol + rtol * w.abs());
        assert!(g.is_finite(), "{what}: element {i} is {g}");
        if excess > worst.0 {
            worst = (excess, i);
        }
    }
    let i = worst.1;
    assert!(
        worst.0 <= 0.0,
        "{what}: element {i} is {} but the reference is {} (rtol {rtol}, atol {atol})",
        got[i],
        want[i]
    );
}

/// Widens to f64.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Checks the gradients that backward gives for every input of `f` against central finite
/// differences of `f` at `samples` coordinates per input. `f` maps the inputs to a tensor `y`;
/// the scalar differentiated is `sum(y * r)` for a fixed random `r`, so every output matters.
pub fn grad_check(
    gpu: &Gpu,
    inputs: &[(Vec<usize>, Vec<f32>)],
    f: &dyn Fn(&[Tensor]) -> Tensor,
    samples: usize,
    eps: f32,
    tol: f64,
    what: &str,
) {
    let mut rng = rng(7);
    let leaves: Vec<Tensor> = inputs
        .iter()
        .map(|(s, d)| upload(gpu, s, d).with_requires_grad(true))
        .collect();
    let y = f(&leaves);
    let r = upload(gpu, y.shape(), &random(&mut rng, y.numel()));
    let loss = y.mul(&r).sum();
    let grads = loss.backward();
    let objective = |values: &[Vec<f32>]| -> f64 {
        let _g = autograd::no_grad();
        let ts: Vec<Tensor> = inputs
            .iter()
            .zip(values)
            .map(|((s, _), d)| upload(gpu, s, d))
            .collect();
        f(&ts).mul(&r).sum().item().expect("loss") as f64
    };
    for (i, leaf) in leaves.iter().enumerate() {
        let analytic = download(
            &grads
                .get(leaf)
                .unwrap_or_else(|| panic!("{what}: no gradient for input {i}")),
        );
        let n = analytic.len();
        for s in 0..samples.min(n) {
            let j = if samples >= n {
                s
            } else {
                rng.random_range(0..n)
            };
            let mut values: Vec<Vec<f32>> = inputs.iter().map(|(_, d)| d.clone()).collect();
            values[i][j] += eps;
            let plus = objective(&values);
            values[i][j] -= 2.0 * eps;
            let minus = objective(&values);
            let numeric = (plus - minus) / (2.0 * eps as f64);
            let a = analytic[j] as f64;
            assert!(
                (a - numeric).abs() <= tol * (1.0 + numeric.abs()),
                "{what}: d/d input{i}[{j}]: backward gives {a}, finite differences {numeric}"
            );
        }
    }
}

/// Row n = (b, s) of z [B, D, H, W] as a vector.
pub fn row(z: &[f32], d: usize, hw: usize, n: usize) -> Vec<f64> {
    let (b, s) = (n / hw, n % hw);
    (0..d).map(|c| z[(b * d + c) * hw + s] as f64).collect()
}

/// The adapter once per kernel set it can run (`vqgpu::gpu::KernelSet`): the GPU set always, and
/// the CPU set where the adapter has subgroups for it. A CPU adapter (lavapipe) must run both.
pub fn kernel_set_gpus() -> Vec<Gpu> {
    use vqgpu::gpu::KernelSet;
    let open = |set| {
        Gpu::new(&GpuOptions {
            kernels: Some(set),
            ..GpuOptions::default()
        })
    };
    let gpu_set = open(KernelSet::Gpu).unwrap_or_else(no_adapter);
    let is_cpu = gpu_set.report().info.device_type == vqgpu::gpu::DeviceType::Cpu;
    match open(KernelSet::Cpu) {
        Ok(cpu_set) => vec![gpu_set, cpu_set],
        Err(e) if !is_cpu => {
            println!("the cpu kernel set is not tested on this adapter: {e}");
            vec![gpu_set]
        }
        Err(e) => panic!("a CPU adapter must run the cpu kernel set: {e}"),
    }
}

/// The CPU kernel set twice: reading its products' operands from texture copies, and from their
/// buffers (`GpuOptions::texture_copies`). `None` where the adapter does not run the CPU set (a
/// CPU adapter must).
pub fn copies_and_buffer_reads() -> Option<[Gpu; 2]> {
    let gpus = kernel_set_gpus();
    let copies = gpus.get(1)?.clone();
    let buffers = Gpu::new(&GpuOptions {
        kernels: Some(vqgpu::gpu::KernelSet::Cpu),
        texture_copies: Some(false),
        ..GpuOptions::default()
    })
    .unwrap_or_else(no_adapter);
    assert!(copies.texture_copies() && !buffers.texture_copies());
    Some([copies, buffers])
}

/// A tensor's values as bits, for comparisons bit for bit.
pub fn bits(t: &Tensor) -> Vec<u32> {
    download(t).iter().map(|v| v.to_bits()).collect()
}

/// The name of the kernel that runs a convolution's products on `gpu`'s kernel set (for profiles).
pub fn conv_kernel(gpu: &Gpu) -> &'static str {
    match gpu.kernel_set() {
        vqgpu::gpu::KernelSet::Gpu => "conv:conv2d",
        vqgpu::gpu::KernelSet::Cpu => "blocked:gemm",
    }
}

/// Trains `new()` for 6 steps straight into `dirs.0`, and another `new()` for 3 steps into
/// `dirs.1`, resumed from its checkpoint there for 3 more; asserts that both end with the same
/// tensors (names, shapes, bits) and metadata, and returns the straight run's checkpoint.
pub fn assert_resume_is_exact<S: vqgpu::train::TrainStep>(
    gpu: &Gpu,
    new: &dyn Fn() -> vqgpu::train::Trainer<S>,
    data: std::sync::Arc<S::Data>,
    options: &dyn Fn(u64, &std::path::Path) -> vqgpu::train::TrainOptions,
    dirs: (&std::path::Path, &std::path::Path),
) -> vqgpu::io::checkpoint::Checkpoint {
    use vqgpu::train;
    let mut straight = new();
    train::run(
        &mut straight,
        data.clone(),
        &options(6, dirs.0),
        &mut |_, _| {},
    )
    .unwrap();
    let mut first = new();
    train::run(
        &mut first,
        data.clone(),
        &options(3, dirs.1),
        &mut |_, _| {},
    )
    .unwrap();
    drop(first);
    let ck = vqgpu::io::checkpoint::Checkpoint::load(&dirs.1.join(train::CHECKPOINT_FILE)).unwrap();
    let mut resumed = train::Trainer::<S>::from_checkpoint(gpu, &ck).unwrap();
    assert_eq!(resumed.run.step, 3);
    let continued = train::TrainOptions {
        resumed_from: Some(dirs.1.to_path_buf()),
        ..options(6, dirs.1)
    };
    train::run(&mut resumed, data, &continued, &mut |_, _| {}).unwrap();
    let (a, b) = (
        straight.checkpoint().unwrap(),
        resumed.checkpoint().unwrap(),
    );
    assert_eq!(
        a.tensors.keys().collect::<Vec<_>>(),
        b.tensors.keys().collect::<Vec<_>>()
    );
    for (name, (shape, values)) in &a.tensors {
        assert_eq!(
            (shape, values),
            (&b.tensors[name].0, &b.tensors[name].1),
            "{name} differs after resume"
        );
    }
    assert_eq!(a.metadata, b.metadata);
    a
}

/// The loop options of a test run on `dataset` (as a checkpoint records it) for `steps` steps into
/// `out`: a log every 25 steps, no grids, a checkpoint at the end only.
pub fn test_run(dataset: &str, steps: u64, out: &std::path::Path) -> vqgpu::train::TrainOptions {
    vqgpu::train::TrainOptions {
        dataset: dataset.into(),
        steps,
        out: out.to_path_buf(),
        log_every: 25,
        sample_every: 0,
        save_every: 0,
        resumed_from: None,
        overwrite: false,
    }
}

/// An empty temporary directory for test `name` of this process (`group` keeps test files
/// apart).
pub fn fresh_dir(group: &str, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vqgpu-{group}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
