//! `bench vqvae`: training throughput of a VQ-VAE on random images and where a step's GPU time
//! goes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::Batch;
use crate::error::Result;
use crate::gpu::timing::{Clock, GpuTimer};
use crate::gpu::Gpu;
use crate::models::vqvae::{VqVae, VqVaeConfig, VqVaeOutput};
use crate::tensor::Tensor;
use crate::train::VqVaeTrainer;

use super::adapter_line;
use super::profile::{self, StepProfile};
use super::throughput::{time_steps, Throughput};

/// Variance of pixels uniform in [0, 1]: the loss scale of the random images.
const UNIFORM_VARIANCE: f32 = 1.0 / 12.0;

/// Training throughput of a VQ-VAE and where a step's GPU time goes.
#[derive(Clone, Debug)]
pub struct VqVaeBench {
    /// Training images per second of each timed run (whole steps, each ended as training ends it).
    pub training: Throughput,
    /// Mean seconds per step of each phase: encoder, quantizer, decoder + loss, backward, optimizer.
    pub phases: [f64; 5],
    /// The clock of the phase split.
    pub clock: Clock,
    /// The profile of one step, when asked for.
    pub profile: Option<StepProfile>,
    /// Bytes of GPU buffers and texture copies created by the end of the timed steps (the peak;
    /// see [`Gpu::buffer_bytes`] and [`Gpu::texture_bytes`]).
    pub gpu_bytes: u64,
}

/// Names of [`VqVaeBench::phases`].
pub const PHASES: [&str; 5] = [
    "encoder",
    "quantizer",
    "decoder + loss",
    "backward",
    "optimizer",
];

/// The model and the length of `bench vqvae`.
#[derive(Clone, Debug)]
pub struct VqVaeBenchOptions {
    /// Images per step.
    pub batch: usize,
    /// Timed steps per run.
    pub steps: usize,
    /// Timed runs (the median is reported).
    pub repeats: usize,
    /// The model (3x32x32 inputs).
    pub model: VqVaeConfig,
    /// Also profile one step launch by launch.
    pub profile: bool,
}

/// One training step of `trainer`'s model on `x`, recorded with a timer mark before it and after
/// each phase (6 marks); the trainer's own step does the same work without the marks.
fn marked_step(trainer: &mut VqVaeTrainer, x: &Tensor, timer: &mut GpuTimer) -> Result<()> {
    let gpu = x.gpu().clone();
    let model = &mut trainer.task.model;
    timer.mark(&gpu)?;
    let z = model.encode(x);
    timer.mark(&gpu)?;
    let quantized = model.quantizer.forward(&z, true);
    timer.mark(&gpu)?;
    let out = VqVaeOutput {
        recon: model.decode(&quantized.z_q),
        quantized,
    };
    let (loss, _) = VqVae::objective(x, &out, trainer.task.images.variance);
    timer.mark(&gpu)?;
    model.params.zero_grad();
    loss.backward();
    timer.mark(&gpu)?;
    trainer.run.adam.step(&model.params);
    timer.mark(&gpu)
}

/// Trains the model of `options` on random images in [-0.5, 0.5): 3 warm-up steps, then
/// `options.repeats` timed runs of `options.steps` steps, then `options.steps` steps split into
/// phases; with `options.profile`, then profiles one more step.
pub fn vqvae(gpu: &Gpu, options: &VqVaeBenchOptions) -> Result<VqVaeBench> {
    let (config, batch, steps) = (options.model.clone(), options.batch, options.steps);
    let shape = [config.in_channels, 32, 32];
    let mut trainer = VqVaeTrainer::new(gpu, config, 0, 3e-4, batch, shape, UNIFORM_VARIANCE)?;
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let images = Batch {
        step: 0,
        inputs: (0..batch * shape.iter().product::<usize>())
            .map(|_| rng.random())
            .collect(),
        labels: Vec::new(),
    };
    let training = time_steps(gpu, (steps, options.repeats, batch), &mut || {
        trainer.train_step(&images)
    })?;
    let gpu_bytes = gpu.buffer_bytes() + gpu.texture_bytes();
    trainer.take_metrics()?;
    let [c, h, w] = shape;
    let x = Tensor::from_slice(gpu, &[batch, c, h, w], &images.image_inputs())?;
    let mut timer = GpuTimer::with_marks(gpu, 6);
    let mut phases = [0.0; 5];
    for _ in 0..steps {
        marked_step(&mut trainer, &x, &mut timer)?;
        for (total, t) in phases.iter_mut().zip(timer.read(gpu)?) {
            *total += t / steps as f64;
        }
    }
    let profile = if options.profile {
        let p = profile::profile_step(gpu, &mut || trainer.train_step(&images))?;
        trainer.take_metrics()?;
        Some(p)
    } else {
        None
    };
    Ok(VqVaeBench {
        training,
        phases,
        clock: timer.clock(),
        profile,
        gpu_bytes,
    })
}

/// `bench vqvae`: prints the throughput and the split of a step.
pub fn run(gpu: &Gpu, options: &VqVaeBenchOptions) -> Result<VqVaeBench> {
    let (batch, steps, config) = (options.batch, options.steps, &options.model);
    println!(
        "{}; batch {batch}, {steps} steps a run, hidden {}, K {}, D {}",
        adapter_line(gpu),
        config.hidden,
        config.codebook_size,
        config.code_dim
    );
    let r = vqvae(gpu, options)?;
    let t = &r.training;
    println!(
        "training: {:.1} images/s ({:.2} ms per step) by the GPU clock ({}), {:.1} images/s by the wall clock",
        t.median(),
        batch as f64 / t.median() * 1e3,
        t.spread(),
        t.wall_median()
    );
    println!(
        "GPU memory: {:.1} MiB in buffers and texture copies (every one vqgpu created, kept: the peak)",
        r.gpu_bytes as f64 / (1 << 20) as f64
    );
    let total: f64 = r.phases.iter().sum();
    for (name, t) in PHASES.iter().zip(r.phases) {
        println!(
            "  {name:<16} {:>9.3} ms  {:>5.1}%",
            t * 1e3,
            t / total * 100.0
        );
    }
    if let Some(p) = &r.profile {
        profile::print(p);
    }
    Ok(r)
}
