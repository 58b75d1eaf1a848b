//! The step profiler of `bench vqvae --profile` and `bench prior --profile`: its rows add up to
//! the step and cover every layer, and the host figures it reports (dispatches, compute passes,
//! bind groups, uploads) match what a step records. Also: a repeated step allocates nothing, and
//! `bench kernels` and `bench quantizer` time each product beside the plain GEMM of its M x N x K.

mod common;
use common::*;
use vqgpu::data::Batch;
use vqgpu::models::pixelcnn::PixelCnnConfig;
use vqgpu::tasks::bench::{
    self, profile::StepProfile, BenchConfig, Measured, PriorBenchOptions, VqVaeBenchOptions,
};
use vqgpu::tasks::sample::Sampler;
use vqgpu::train::VqVaeTrainer;

/// Checks what must hold for any profile: one record per dispatch, groups that add up to the
/// total, and every launch inside the span of the step.
fn check_profile(p: &StepProfile, what: &str) {
    let records = &p.profile.records;
    assert!(!records.is_empty(), "{what}: no launches recorded");
    assert_eq!(
        records.len() as u64,
        p.host.per_step.dispatches,
        "{what}: one record per dispatch of a step"
    );
    let total = p.total();
    for (rows, name) in [(&p.by_kernel, "kernel"), (&p.by_layer, "layer")] {
        let sum: f64 = rows.iter().map(|r| r.seconds).sum();
        let calls: usize = rows.iter().map(|r| r.calls).sum();
        assert!(
            (sum - total).abs() <= 1e-9 * total.max(1.0),
            "{what}: rows by {name} add up to {sum} s, the launches to {total} s"
        );
        assert_eq!(calls, records.len(), "{what}: calls by {name}");
        assert!(
            rows.windows(2).all(|w| w[0].seconds >= w[1].seconds),
            "{what}: rows by {name} are not sorted slowest first"
        );
    }
    assert!(total > 0.0, "{what}: the launches took no time");
    for r in records {
        assert!(
            r.seconds >= 0.0 && r.seconds <= p.profile.span * (1.0 + 1e-9) + 1e-9,
            "{what}: a launch of {} took {} s, outside the step's span {} s",
            r.kernel,
            r.seconds,
            p.profile.span
        );
    }
    assert!(p.host.record_seconds > 0.0, "{what}: no host time");
}

#[test]
fn the_vqvae_step_profile_adds_up_and_names_every_layer() {
    for gpu in kernel_set_gpus() {
        check_vqvae_profile(&gpu);
    }
}

fn check_vqvae_profile(gpu: &vqgpu::Gpu) {
    let conv = conv_kernel(gpu);
    let options = VqVaeBenchOptions {
        profile: true,
        ..tiny_vqvae_bench()
    };
    let r = bench::vqvae(gpu, &options).expect("bench vqvae");
    assert!(
        r.gpu_bytes >= 2 * 3 * 32 * 32 * 4,
        "GPU memory {} bytes is less than the batch",
        r.gpu_bytes
    );
    let p = r.profile.expect("a profile was asked for");
    check_profile(&p, "vqvae");
    let has = |key: &str| p.by_layer.iter().any(|row| row.name == key);
    // by the product's shape, the GPU set's convolution runs as `conv2d` or `conv2d_narrow` and
    // the CPU set's GEMM as `gemm` or `gemm_tall`
    let has_conv = |key: &str| {
        p.by_layer.iter().any(|row| {
            row.name == key || [format!("{key}_tall"), format!("{key}_narrow")].contains(&row.name)
        })
    };
    let names = || p.by_layer.iter().map(|r| &r.name).collect::<Vec<_>>();
    let starts = |prefix: &str| p.by_layer.iter().any(|row| row.name.starts_with(prefix));
    // a convolution's backward rows name their part: the input gradient (dx; none for the first
    // layer, whose input is the batch), the weight gradient (dw) and the bias gradient (db)
    for (layer, dx) in [
        ("encoder.0", false),
        ("encoder.2", true),
        ("pre_quantization", true),
        ("decoder.0", true),
    ] {
        assert!(
            has_conv(&format!("{layer} fwd {conv}"))
                && has_conv(&format!("{layer} bwd dw {conv}"))
                && has_conv(&format!("{layer} bwd dx {conv}")) == dx
                && starts(&format!("{layer} bwd db reduce:"))
                && !starts(&format!("{layer} bwd {conv}")),
            "layer {layer}: wrong forward or backward convolution rows: {:?}",
            names()
        );
    }
    let nearest = match gpu.kernel_set() {
        vqgpu::gpu::KernelSet::Gpu => "vq fwd vq:nearest",
        vqgpu::gpu::KernelSet::Cpu => "vq fwd blocked:nearest",
    };
    assert!(has(nearest), "no nearest-code row");
    assert!(has("optimizer fwd adam:adam_step"), "no optimizer row");
    // convolutions and the code search count their work
    let conv = p.by_kernel.iter().find(|r| r.name == conv);
    assert!(conv.is_some_and(|r| r.flops > 0.0 && r.bytes > 0));
    // launches share compute passes: far fewer passes than launches, or on the CPU set at most
    // one more per texture copy (a copy ends the pass)
    let s = p.host.per_step;
    let shared = if s.texture_copies == 0 {
        s.passes * 4 < s.dispatches
    } else {
        s.passes <= 1 + s.passes_ended_by_copies && s.passes_ended_by_copies <= s.texture_copies
    };
    assert!(
        s.passes > 0 && shared,
        "{} passes for {} launches",
        s.passes,
        s.dispatches
    );
    // the batch is uploaded once, as bytes: 2 images of 3x32x32
    assert_eq!(s.bytes_uploaded, 2 * 3 * 32 * 32);
    assert!(has("- fwd elementwise:lookup_bytes"), "no byte-lookup row");
    // parameter gradients are written into their slots, not added there
    assert!(
        !has("- bwd elementwise:accumulate"),
        "a parameter gradient was added into its slot"
    );
    // ReLUs after convolutions are fused into them: those left act on the residual stacks'
    // inputs and outputs, (one residual layer + the stack's own) x (encoder, decoder); the
    // residual additions are fused too
    let calls = |key: &str| {
        p.by_layer
            .iter()
            .filter(|row| row.name == key)
            .map(|row| row.calls)
            .sum::<usize>()
    };
    let res_layers = tiny_vqvae().res_layers;
    assert_eq!(calls("- fwd elementwise:relu"), 2 * (res_layers + 1));
    // the one addition left in the forward pass: the loss's terms
    assert_eq!(calls("- fwd elementwise:add"), 1);
}

#[test]
fn a_repeated_training_step_submits_once_creates_no_buffers_and_reuses_its_bind_groups() {
    let gpu = gpu();
    let mut trainer =
        VqVaeTrainer::new(&gpu, tiny_vqvae(), 0, 1e-3, 2, [3, 32, 32], 1.0 / 12.0).unwrap();
    let images = Batch {
        step: 0,
        inputs: (0..2 * 3 * 32 * 32).map(|i| (i * 7 % 256) as u8).collect(),
        labels: Vec::new(),
    };
    for _ in 0..3 {
        trainer.train_step(&images).unwrap();
    }
    gpu.sync().unwrap();
    let (buffers, before) = (gpu.buffers_created(), gpu.host_stats());
    trainer.train_step(&images).unwrap();
    gpu.sync().unwrap();
    let step = gpu.host_stats() - before;
    assert_eq!(
        gpu.buffers_created(),
        buffers,
        "a repeated step created buffers"
    );
    assert!(step.dispatches > 0);
    // the batch upload comes before any launch of the step, so it does not submit them early:
    // the step's one submit is the sync's, and its launches share one compute pass, except that
    // the texture copies a CPU-set launch reads (one to four, made just before it) end the pass
    assert!(
        step.texture_copies / 4 <= step.passes_ended_by_copies
            && step.passes_ended_by_copies <= step.texture_copies
    );
    assert_eq!(
        (step.submissions, step.passes),
        (1, 1 + step.passes_ended_by_copies),
        "submits and compute passes of a training step and a sync"
    );
    assert_eq!(
        step.texture_copies > 0,
        gpu.kernel_set() == vqgpu::gpu::KernelSet::Cpu && gpu.texture_copies()
    );
    // the pool hands out the same buffers in the same order, so every bind group is cached
    assert_eq!(
        step.bind_groups, 0,
        "bind groups created by a repeated step of {} launches",
        step.dispatches
    );
}

#[test]
fn the_prior_bench_trains_samples_and_profiles() {
    let gpu = gpu();
    let options = PriorBenchOptions {
        sample_sides: vec![2, 3],
        // given cached first: the full sampler is still timed first on each size
        samplers: vec![Sampler::Cached, Sampler::Full],
        full_positions: Some(2),
        profile: true,
        repeats: 2,
        ..tiny_prior_bench()
    };
    // each result is reported as soon as it is measured, and each sampler before it is timed
    let mut reports = Vec::new();
    let r = bench::prior_reporting(&gpu, &options, &mut |m| {
        reports.push(match m {
            Measured::Training(t) => format!("trained {}", t.median()),
            Measured::SamplingStarts {
                side,
                sampler,
                positions,
            } => format!("starts {side} {} {positions}", sampler.name()),
            Measured::Sampled(timed) => {
                let s = timed.last().expect("the speed just measured");
                format!("sampled {} {} of {}", s.side, s.sampler.name(), timed.len())
            }
        })
    })
    .expect("bench prior");
    // one rate per timed run, by each clock; the median is one of them
    let t = &r.training;
    assert_eq!((t.runs.len(), t.wall_runs.len()), (2, 2));
    assert!(t.runs.iter().chain(&t.wall_runs).all(|&x| x > 0.0));
    assert!(t.runs.contains(&t.median()) && t.wall_runs.contains(&t.wall_median()));
    assert_eq!(
        reports,
        [
            format!("trained {}", t.median()),
            "starts 2 full 2".into(),
            "sampled 2 full of 1".into(),
            "starts 2 cached 4".into(),
            "sampled 2 cached of 2".into(),
            "starts 3 full 2".into(),
            "sampled 3 full of 3".into(),
            "starts 3 cached 9".into(),
            "sampled 3 cached of 4".into(),
        ]
    );
    let timed: Vec<_> = r
        .sampling
        .iter()
        .map(|s| (s.side, s.sampler, s.positions_timed))
        .collect();
    assert_eq!(
        timed,
        [
            (2, Sampler::Full, 2),
            (2, Sampler::Cached, 4),
            (3, Sampler::Full, 2),
            (3, Sampler::Cached, 9)
        ]
    );
    assert!(r.sampling.iter().all(|s| s.samples_per_s > 0.0));
    let p = r.profile.expect("a profile was asked for");
    check_profile(&p, "prior");
    assert!(p
        .by_kernel
        .iter()
        .any(|row| row.name == "softmax:cross_entropy"));
}

#[test]
fn a_bad_grid_or_sample_count_is_refused_before_the_prior_trains() {
    let gpu = gpu();
    let sampled = |side| PriorBenchOptions {
        sample_sides: vec![2, side],
        ..tiny_prior_bench()
    };
    let trained = |side| PriorBenchOptions {
        grid: [side, side],
        ..tiny_prior_bench()
    };
    let no_samples = PriorBenchOptions {
        samples: 0,
        ..tiny_prior_bench()
    };
    for (options, says) in [
        (
            sampled(0),
            "side of a sampled code grid must be 1 to 256, got 0",
        ),
        (
            sampled(257),
            "side of a sampled code grid must be 1 to 256, got 257",
        ),
        (
            trained(0),
            "side of a training code grid must be 1 to 256, got 0",
        ),
        (
            trained(300),
            "side of a training code grid must be 1 to 256, got 300",
        ),
        (
            no_samples,
            "grids sampled at once must be at least 1, got 0",
        ),
    ] {
        let mut reports = 0;
        let err =
            bench::prior_reporting(&gpu, &options, &mut |_| reports += 1).expect_err("refused");
        assert!(err.to_string().contains(says), "unclear error: {err}");
        assert_eq!(
            reports, 0,
            "the prior was trained before the grid was checked"
        );
    }
}

#[test]
fn no_steps_or_runs_to_time_and_too_many_runs_are_refused() {
    let gpu = gpu();
    let too_many = bench::MAX_REPEATS + 1;
    for (steps, repeats, what) in [
        (0, 1, "number of steps".to_string()),
        (1, 0, "number of repeats".into()),
        (
            1,
            too_many,
            format!("at most {}, got {too_many}", bench::MAX_REPEATS),
        ),
    ] {
        let prior = PriorBenchOptions {
            steps,
            repeats,
            ..tiny_prior_bench()
        };
        let mut reports = 0;
        let err = bench::prior_reporting(&gpu, &prior, &mut |_| reports += 1)
            .expect_err("nothing to time");
        assert!(err.to_string().contains(&what), "unclear error: {err}");
        assert_eq!(reports, 0, "something was measured");
        let vqvae = VqVaeBenchOptions {
            steps,
            repeats,
            ..tiny_vqvae_bench()
        };
        let err = bench::vqvae(&gpu, &vqvae).expect_err("nothing to time");
        assert!(err.to_string().contains(&what), "unclear error: {err}");
    }
    // the kernel benchmarks take the same bound, refused before anything is timed
    for repeats in [0, too_many] {
        let config = BenchConfig {
            repeats,
            ..BenchConfig::default()
        };
        assert!(config.validate().is_err(), "{repeats} repeats accepted");
    }
}

/// `bench vqvae` of a tiny VQ-VAE for one step of 2 images, one run, no profile.
fn tiny_vqvae_bench() -> VqVaeBenchOptions {
    VqVaeBenchOptions {
        batch: 2,
        steps: 1,
        repeats: 1,
        model: tiny_vqvae(),
        profile: false,
    }
}

/// `bench prior` of a tiny prior for one step, sampling 2 grids of 2x2 with the cached sampler.
fn tiny_prior_bench() -> PriorBenchOptions {
    PriorBenchOptions {
        batch: 2,
        steps: 1,
        repeats: 1,
        grid: [3, 4],
        samples: 2,
        sample_sides: vec![2],
        samplers: vec![Sampler::Cached],
        full_positions: None,
        model: PixelCnnConfig {
            codes: 8,
            channels: 4,
            layers: 2,
            kernel: 3,
            head: 8,
            ..PixelCnnConfig::default()
        },
        profile: false,
    }
}

/// The smallest timing: one call, one repeat.
fn one_call(batch: usize) -> BenchConfig {
    BenchConfig {
        batch,
        iters: 1,
        repeats: 1,
        gemm_sizes: vec![16],
    }
}

#[test]
fn every_convolution_and_quantizer_row_is_timed_beside_the_gemm_of_its_shape() {
    for gpu in kernel_set_gpus() {
        let set = gpu.kernel_set();
        let rows = bench::kernels(&gpu, &one_call(3), &mut |_| {}).unwrap();
        // the GEMM rows (on the GPU set also the tile it did not choose), then forward, input and
        // weight gradient of the 9 reference convolutions
        let (gemms, convs): (Vec<_>, Vec<_>) =
            rows.iter().partition(|r| r.name.starts_with("gemm"));
        assert_eq!(convs.len(), 27, "{set:?}");
        assert!(!gemms.is_empty() && gemms.iter().all(|r| r.gemm.is_none()));
        for row in convs {
            let g = row
                .gemm
                .unwrap_or_else(|| panic!("{set:?}: {} has no GEMM", row.name));
            // each product is the GEMM of the same flops, whichever way it is laid out
            let gemm_flops = 2.0 * (g.m * g.n * g.k) as f64;
            assert_eq!(
                gemm_flops,
                row.flops,
                "{set:?}: {} against {}",
                row.name,
                g.shape()
            );
            assert!(
                g.seconds > 0.0 && g.seconds.is_finite(),
                "{set:?}: {}",
                row.name
            );
            assert!(row.gemm_fraction().is_some_and(|f| f > 0.0));
        }
        // the forward of a strided convolution and its input gradient are different products
        let shape = |name: &str| rows.iter().find(|r| r.name == name).unwrap().gemm.unwrap();
        let enc = "enc conv 3->64 k4 s2 32x32";
        assert_eq!(shape(&format!("{enc} fwd")).shape(), "64x768x48");
        assert_eq!(shape(&format!("{enc} bwd input")).shape(), "3x3072x256");
        assert_eq!(shape(&format!("{enc} bwd weight")).shape(), "64x48x768");
        // a transposed convolution's forward is the input gradient of its adjoint
        let dec = "dec convT 64->3 k4 s2 16x16";
        assert_eq!(shape(&format!("{dec} fwd")).shape(), "3x3072x256");
        assert_eq!(shape(&format!("{dec} bwd input")).shape(), "64x768x48");

        let timing = one_call(1);
        let rows = bench::quantizer(&gpu, &[(300, 70, 9)], &timing, &mut |_| {}).unwrap();
        let g = rows[0].gemm.expect("the quantizer's GEMM");
        assert_eq!(
            (g.m, g.n, g.k),
            (300, 70, 9),
            "{set:?}: rows x codes x dims"
        );
        assert!(g.seconds > 0.0 && g.seconds.is_finite());
    }
}

/// A device that makes no texture copies (the GPU set, or the CPU set with copies off) makes no
/// texture slots either: its kernels bind one texel where they could read copies.
#[test]
fn a_device_without_copies_makes_no_texture_slots() {
    let mut gpus = vec![kernel_set_gpus().swap_remove(0)];
    gpus.extend(copies_and_buffer_reads().map(|[_, buffers]| buffers));
    for gpu in gpus {
        assert!(!gpu.texture_copies());
        let mut trainer =
            VqVaeTrainer::new(&gpu, tiny_vqvae(), 0, 1e-3, 2, [3, 32, 32], 1.0 / 12.0).unwrap();
        let images = Batch {
            step: 0,
            inputs: vec![128; 2 * 3 * 32 * 32],
            labels: Vec::new(),
        };
        trainer.train_step(&images).unwrap();
        gpu.sync().unwrap();
        assert_eq!(gpu.texture_bytes(), 0, "kernels {}", gpu.kernel_set());
    }
}

#[test]
fn benchmark_sizes_too_large_for_the_adapter_are_refused_before_any_allocation() {
    let gpu = gpu();
    let too_large = |err: vqgpu::Error| {
        assert!(
            err.to_string().contains("exceeds this adapter's limit"),
            "unclear error: {err}"
        );
    };
    // 2^20 squared floats need 4 TiB; 2^33 squared overflows the element count itself; refused
    // before the sizes before them are timed
    for n in [1 << 20, 1 << 33] {
        let config = BenchConfig {
            gemm_sizes: vec![16, n],
            ..one_call(1)
        };
        let mut rows = 0;
        too_large(bench::kernels(&gpu, &config, &mut |_| rows += 1).expect_err("a huge GEMM"));
        assert_eq!(rows, 0, "a GEMM was timed before the refusal");
    }
    // the convolution rows' batch (checked before the GEMMs are timed), and the quantizer's rows
    let mut rows = 0;
    let huge_batch = BenchConfig {
        gemm_sizes: vec![16],
        ..one_call(1 << 40)
    };
    too_large(bench::kernels(&gpu, &huge_batch, &mut |_| rows += 1).expect_err("a huge batch"));
    assert_eq!(rows, 0, "a GEMM was timed before the refusal");
    let huge_n = [(1 << 40, 8, 4)];
    too_large(bench::quantizer(&gpu, &huge_n, &one_call(1), &mut |_| {}).expect_err("huge N"));
}
