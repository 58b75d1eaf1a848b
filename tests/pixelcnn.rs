//! The PixelCNN prior on the GPU: causality of the masked stacks, learning a code distribution,
//! exact resume, and reproducible sampling.

mod common;
use common::*;
use rand::Rng;
use vqgpu::autograd;
use vqgpu::data::CodeGrids;
use vqgpu::io::checkpoint::Checkpoint;
use vqgpu::models::pixelcnn::{PixelCnn, PixelCnnConfig};
use vqgpu::nn::LrSchedule;
use vqgpu::tasks::sample::{Prior, Sampler};
use vqgpu::train::{PriorTrainer, TrainStep};

fn config(codes: usize, layers: usize, kernel: usize, classes: usize) -> PixelCnnConfig {
    PixelCnnConfig {
        codes,
        channels: 8,
        layers,
        kernel,
        head: 16,
        classes,
        condition_codes: 0,
        attention_every: 0,
        heads: 2,
    }
}

/// `config` with causal self-attention after every `every` layers.
fn attending(every: usize, config: PixelCnnConfig) -> PixelCnnConfig {
    PixelCnnConfig {
        attention_every: every,
        ..config
    }
}

/// Changes every code at positions >= `p` of every item of `codes` ([b, n] grids of `k` codes)
/// and asserts that the logits `logits_of` gives at every earlier position stay bitwise `base`.
fn assert_causal_from(
    rng: &mut rand_chacha::ChaCha8Rng,
    codes: &[f32],
    base: &[f32],
    logits_of: &dyn Fn(&[f32]) -> Vec<f32>,
    [b, n, k]: [usize; 3],
    p: usize,
    what: &str,
) {
    let mut changed = codes.to_vec();
    for item in 0..b {
        for q in p..n {
            let old = changed[item * n + q] as usize;
            changed[item * n + q] = ((old + 1 + rng.random_range(0..k - 1)) % k) as f32;
        }
    }
    let after = logits_of(&changed);
    for item in 0..b {
        for pos in 0..p {
            for c in 0..k {
                let i = (item * k + c) * n + pos;
                assert_eq!(
                    after[i], base[i],
                    "{what}: logits at position {pos} changed with the codes from {p} on"
                );
            }
        }
    }
}

/// A prior conditioned on a grid of half the side (a VQ-VAE-2's bottom prior given its top
/// codes): still causal in its own codes whatever the condition, its logits move with the
/// condition of their own item only, and its checkpoint round trip keeps the conditioning stack.
#[test]
fn a_prior_conditioned_on_top_codes_is_causal_and_sees_its_condition() {
    let gpu = gpu();
    let mut rng = rng(23);
    let (b, h, w, k, kt) = (2, 4, 6, 7, 5);
    let n = h * w;
    let model = PixelCnn::new(
        &gpu,
        PixelCnnConfig {
            condition_codes: kt,
            ..config(k, 3, 3, 0)
        },
        4,
    )
    .unwrap();
    let _g = autograd::no_grad();
    let codes: Vec<f32> = (0..b * n).map(|_| rng.random_range(0..k) as f32).collect();
    let top: Vec<f32> = (0..b * n / 4)
        .map(|_| rng.random_range(0..kt) as f32)
        .collect();
    let logits_of = |codes: &[f32], top: &[f32]| {
        let condition = upload(&gpu, &[b, h / 2, w / 2], top);
        let codes = upload(&gpu, &[b, h, w], codes);
        download(&model.forward_conditioned(&codes, None, Some(&condition)))
    };
    let base = logits_of(&codes, &top);
    let at = |l: &[f32], item: usize, c: usize, pos: usize| l[(item * k + c) * n + pos];
    for p in 0..n {
        assert_causal_from(
            &mut rng,
            &codes,
            &base,
            &|c| logits_of(c, &top),
            [b, n, k],
            p,
            "conditioned",
        );
    }
    // another top code in item 0 moves item 0's logits, and only its
    let mut other_top = top.clone();
    other_top[0] = ((top[0] as usize + 1) % kt) as f32;
    let moved = logits_of(&codes, &other_top);
    assert!((0..k).any(|c| at(&moved, 0, c, 0) != at(&base, 0, c, 0)));
    for pos in 0..n {
        for c in 0..k {
            assert_eq!(at(&moved, 1, c, pos), at(&base, 1, c, pos), "item 1 moved");
        }
    }
    // the checkpoint keeps the conditioning stack
    let mut ck = vqgpu::io::checkpoint::Checkpoint::default();
    model.write_state(&mut ck).unwrap();
    for name in [
        "condition.embedding.weight",
        "condition.upsample.weight",
        "layers.2.condition.weight",
    ] {
        assert!(ck.tensors.contains_key(name), "{name} missing");
    }
    let loaded = PixelCnn::from_checkpoint(&gpu, &ck).unwrap();
    assert_eq!(loaded.config, model.config);
}

/// The logits at a position must not depend on the code there or at any later position in raster
/// order, and must depend on the position just before it (so the check is not vacuous); with
/// attention (PixelSNAIL-style), the attention included.
#[test]
fn logits_depend_only_on_earlier_positions() {
    let gpu = gpu();
    let mut rng = rng(21);
    let (b, h, w, k) = (2, 5, 6, 7);
    let n = h * w;
    // the last number: attention after every this many layers (0: none)
    for (layers, kernel, classes, every) in [
        (1, 3, 0, 0),
        (2, 3, 0, 0),
        (3, 5, 0, 0),
        (4, 3, 3, 0),
        (2, 7, 0, 0),
        (2, 3, 0, 1),
        (4, 3, 3, 2),
        (3, 5, 0, 1),
    ] {
        let what =
            format!("{layers} layers, kernel {kernel}, {classes} classes, attention every {every}");
        let sizes = attending(every, config(k, layers, kernel, classes));
        let model = PixelCnn::new(&gpu, sizes, 3).unwrap();
        let _g = autograd::no_grad();
        let labels =
            (classes > 0).then(|| upload(&gpu, &[b, h, w], &PixelCnn::label_grid(&[2, 0], n)));
        let logits_of = |codes: &[f32]| {
            download(&model.forward(&upload(&gpu, &[b, h, w], codes), labels.as_ref()))
        };
        let codes: Vec<f32> = (0..b * n).map(|_| rng.random_range(0..k) as f32).collect();
        let base = logits_of(&codes);
        // logit of class c at (item, position)
        let at = |l: &[f32], item: usize, c: usize, pos: usize| l[(item * k + c) * n + pos];
        for p in 0..n {
            assert_causal_from(&mut rng, &codes, &base, &logits_of, [b, n, k], p, &what);
            // the code at p must reach its right neighbour (horizontal stack) and the position
            // below it (vertical stack)
            let mut only_p = codes.clone();
            only_p[p] = ((codes[p] as usize + 1) % k) as f32;
            let moved = logits_of(&only_p);
            let right = (p % w + 1 < w).then_some(p + 1);
            let below = (p + w < n).then_some(p + w);
            for q in right.into_iter().chain(below) {
                assert!(
                    (0..k).any(|c| at(&moved, 0, c, q) != at(&base, 0, c, q)),
                    "{what}: position {q} does not see the code at {p}"
                );
            }
        }
    }
}

/// Attention lets the last position see the first code of the grid, out of reach of the two
/// gated layers' convolutions (checked: without attention it does not see it).
#[test]
fn attention_reaches_codes_beyond_the_convolutions() {
    let gpu = gpu();
    let mut rng = rng(26);
    let (b, h, w, k) = (1, 5, 6, 7);
    let n = h * w;
    let codes: Vec<f32> = (0..b * n).map(|_| rng.random_range(0..k) as f32).collect();
    let mut first_changed = codes.clone();
    first_changed[0] = ((codes[0] as usize + 1) % k) as f32;
    let _g = autograd::no_grad();
    for (every, reaches) in [(0, false), (1, true)] {
        let model = PixelCnn::new(&gpu, attending(every, config(k, 2, 3, 0)), 3).unwrap();
        let logits_of =
            |codes: &[f32]| download(&model.forward(&upload(&gpu, &[b, h, w], codes), None));
        let (base, moved) = (logits_of(&codes), logits_of(&first_changed));
        let last_moved = (0..k).any(|c| base[c * n + n - 1] != moved[c * n + n - 1]);
        assert_eq!(last_moved, reaches, "attention every {every}");
        // a block after the first layer, none after the last one (its horizontal stack is unused)
        let names: Vec<&str> = model.params.params().iter().map(|p| p.name()).collect();
        for name in
            ["query", "key", "value", "out"].map(|c| format!("layers.0.attention.{c}.weight"))
        {
            assert_eq!(names.contains(&name.as_str()), reaches, "{name}");
        }
        assert!(!names.iter().any(|n| n.starts_with("layers.1.attention")));
    }
}

/// A prior with random parameters, the per-class biases included (they start at zero).
fn random_prior(
    gpu: &vqgpu::gpu::Gpu,
    rng: &mut rand_chacha::ChaCha8Rng,
    config: PixelCnnConfig,
) -> PixelCnn {
    let model = PixelCnn::new(gpu, config, rng.random()).unwrap();
    for p in model.params.params() {
        if p.name().ends_with("class_bias") {
            let values = random(rng, p.tensor().numel());
            p.tensor().write(&values).unwrap();
        }
    }
    model
}

/// The incremental evaluation gives the logits of the full forward pass at every position in
/// raster order, bit for bit, for several grid sizes, depths, kernel sizes, with class
/// conditioning and conditioned on a grid of top codes (the 7x7 kernel's sums are long enough to
/// be split into chunks).
#[test]
fn incremental_logits_equal_the_full_forward_pass() {
    for gpu in kernel_set_gpus() {
        incremental_equals_full(&gpu);
    }
}

fn incremental_equals_full(gpu: &vqgpu::Gpu) {
    let gpu = gpu.clone();
    let mut rng = rng(25);
    // codes of the grid of half the side the prior is conditioned on (0: none), and attention
    // after every this many layers (0: none)
    for (b, [h, w], layers, kernel, classes, top_codes, every) in [
        (1, [1, 1], 1, 3, 0, 0, 0),
        (2, [4, 5], 2, 3, 0, 0, 0),
        (3, [5, 3], 3, 5, 2, 0, 0),
        (2, [6, 7], 4, 7, 0, 0, 0),
        (2, [3, 9], 2, 3, 3, 0, 0),
        (2, [4, 6], 3, 3, 0, 5, 0),
        (3, [6, 4], 2, 5, 2, 9, 0),
        (2, [4, 5], 3, 3, 0, 0, 1),
        (3, [5, 3], 4, 5, 2, 0, 2),
        (2, [4, 6], 3, 3, 0, 5, 1),
        (1, [1, 1], 2, 3, 0, 0, 1),
        // four and eight grids: a position of the grids side by side is one product over them
        // on the CPU set, in the kernel variant of the whole grid's
        (4, [4, 4], 2, 3, 2, 0, 0),
        (8, [4, 6], 3, 3, 0, 5, 1),
    ] {
        let what = format!(
            "{b} grids {h}x{w}, {layers} layers, kernel {kernel}, {classes} classes, {top_codes} top codes, attention every {every}, kernels {}",
            gpu.kernel_set()
        );
        let k = 11;
        let sizes = PixelCnnConfig {
            condition_codes: top_codes,
            ..attending(every, config(k, layers, kernel, classes))
        };
        let model = random_prior(&gpu, &mut rng, sizes);
        let top: Vec<f32> = (0..b * (h / 2) * (w / 2))
            .map(|_| rng.random_range(0..top_codes.max(1)) as f32)
            .collect();
        let condition = (top_codes > 0).then(|| upload(&gpu, &[b, h / 2, w / 2], &top));
        let _g = autograd::no_grad();
        let n = h * w;
        let items: Vec<u32> = (0..b).map(|i| (i % classes.max(1)) as u32).collect();
        let labels =
            (classes > 0).then(|| upload(&gpu, &[b, h, w], &PixelCnn::label_grid(&items, n)));
        let codes: Vec<f32> = (0..b * n).map(|_| rng.random_range(0..k) as f32).collect();
        let codes = upload(&gpu, &[b, h, w], &codes);
        let full =
            download(&model.forward_conditioned(&codes, labels.as_ref(), condition.as_ref()));
        let mut inc = model
            .incremental(
                b,
                [h, w],
                (classes > 0).then_some(&items[..]),
                condition.as_ref(),
            )
            .unwrap();
        for p in 0..n {
            assert_eq!(inc.position(), p);
            let logits = inc.next_logits();
            assert_eq!(logits.shape(), [b, k, 1, 1], "{what}");
            let want: Vec<f32> = (0..b * k).map(|i| full[i * n + p]).collect();
            assert_eq!(download(&logits), want, "{what}: position {p}");
            inc.commit(&codes);
        }
    }
}

/// The cached sampler draws exactly the codes of the full sampler for the same prior, seed and
/// temperature: grids of several sizes, depths and kernel sizes, with class conditioning, at T = 1
/// and greedily.
#[test]
fn cached_and_full_samplers_draw_the_same_codes() {
    let gpu = gpu();
    let mut rng = rng(26);
    for (grid, layers, kernel, classes) in [
        ([3, 4], 1, 3, 0),
        ([5, 5], 3, 5, 0),
        ([8, 8], 2, 3, 4),
        ([4, 10], 4, 7, 0),
    ] {
        let what = format!("{grid:?} grids, {layers} layers, kernel {kernel}, {classes} classes");
        let prior = Prior {
            model: random_prior(&gpu, &mut rng, config(16, layers, kernel, classes)),
            grid,
        };
        let count = 6;
        let labels: Vec<u32> = (0..count).map(|j| (j % classes.max(1)) as u32).collect();
        let labels = (classes > 0).then_some(&labels[..]);
        for (t, seed) in [(1.0, 3), (0.7, 4), (0.0, 5)] {
            let draw = |sampler| {
                download(
                    &prior
                        .sample_codes(sampler, count, labels, t, seed, 0)
                        .unwrap(),
                )
            };
            let full = draw(Sampler::Full);
            assert_eq!(draw(Sampler::Cached), full, "{what}, T = {t}: codes differ");
            let distinct: std::collections::BTreeSet<u32> =
                full.iter().map(|&c| c as u32).collect();
            // (greedy decoding of a random prior may well repeat one code)
            assert!(
                t == 0.0 || distinct.len() > 1,
                "{what}, T = {t}: every code is the same"
            );
        }
    }
}

/// Grids drawn in parts, each told the index of its first grid (as `eval samples` draws its
/// samples), are the grids of the same draw made at once, on both samplers.
#[test]
fn sampling_in_parts_draws_the_grids_of_one_draw() {
    let gpu = gpu();
    let mut rng = rng(27);
    let prior = Prior {
        model: random_prior(&gpu, &mut rng, config(16, 2, 3, 3)),
        grid: [4, 5],
    };
    let labels: Vec<u32> = (0..10).map(|j| (j * 3 / 10) as u32).collect();
    for sampler in [Sampler::Cached, Sampler::Full] {
        let draw = |start: usize, end: usize| {
            let part = &labels[start..end];
            download(
                &prior
                    .sample_codes(sampler, part.len(), Some(part), 1.0, 9, start)
                    .unwrap(),
            )
        };
        let whole = draw(0, 10);
        let parts = [draw(0, 4), draw(4, 7), draw(7, 10)].concat();
        assert_eq!(
            parts,
            whole,
            "{}: the parts differ from the whole",
            sampler.name()
        );
    }
}

/// The code at (r, c) of a grid of class `class` starting with code `a`: class 0 steps by 2 to the
/// right and by 1 down, class 1 by 1 to the right and by 3 down (mod K).
fn rule(class: u32, a: usize, r: usize, c: usize, k: usize) -> usize {
    match class {
        0 => (a + r + 2 * c) % k,
        _ => (a + 3 * r + c) % k,
    }
}

/// 4x4 grids of random class and first code that follow [`rule`]: once the first code (and the
/// class) is known the rest is determined, so the NLL can fall far below the unigram entropy.
fn ruled_codes(
    rng: &mut rand_chacha::ChaCha8Rng,
    len: usize,
    k: usize,
    labelled: bool,
) -> CodeGrids {
    let (h, w) = (4, 4);
    let mut codes = Vec::with_capacity(len * h * w);
    let mut labels = Vec::with_capacity(len);
    for _ in 0..len {
        let class = rng.random_range(0..2u32);
        let a = rng.random_range(0..k);
        labels.push(class);
        for r in 0..h {
            for c in 0..w {
                codes.push(rule(class, a, r, c, k) as f32);
            }
        }
    }
    CodeGrids {
        codes,
        len,
        grid: [h, w],
        codebook_size: k,
        labels: labelled.then_some(labels),
        classes: if labelled { 2 } else { 0 },
        condition: None,
    }
}

#[test]
fn prior_learns_structured_codes_far_below_the_unigram_entropy() {
    let gpu = gpu();
    let mut rng = rng(22);
    let k = 8;
    let train = ruled_codes(&mut rng, 512, k, false);
    let test = ruled_codes(&mut rng, 128, k, false);
    let mut trainer = PriorTrainer::new(&gpu, config(k, 3, 3, 0), 1, 3e-3, 32, [4, 4]).unwrap();
    let before = trainer.task.evaluate(&test, usize::MAX).unwrap();
    for _ in 0..150 {
        trainer.train_step_on(&train).unwrap();
    }
    let train_nll = trainer.take_metrics().unwrap().unwrap().train_nll;
    let after = trainer.task.evaluate(&test, usize::MAX).unwrap();
    let unigram = test.unigram_entropy();
    assert!(
        (unigram - (k as f64).ln()).abs() < 0.05,
        "unigram {unigram}"
    );
    assert!(
        (before - unigram).abs() < 0.5,
        "an untrained prior should be near uniform: {before} vs {unigram}"
    );
    // the ideal model pays log K for the first code and log 2 (the class) for the second:
    // (ln 8 + ln 2) / 16 = 0.17 nats per code
    assert!(
        after < 0.4 * unigram,
        "test NLL {after} nats (train {train_nll}) not far below the unigram entropy {unigram}"
    );
}

/// 2x8 grids of zeros but for a random first code that the last code repeats: only a prior that
/// sees the first code from the last position can predict it.
fn copied_corner_codes(rng: &mut rand_chacha::ChaCha8Rng, len: usize, k: usize) -> CodeGrids {
    let n = 16;
    let mut codes = vec![0.0; len * n];
    for grid in codes.chunks_mut(n) {
        grid[0] = rng.random_range(0..k) as f32;
        grid[n - 1] = grid[0];
    }
    CodeGrids {
        codes,
        len,
        grid: [2, 8],
        codebook_size: k,
        labels: None,
        classes: 0,
        condition: None,
    }
}

/// With attention (PixelSNAIL-style) the prior learns a dependency out of its convolutions'
/// reach, the last code copying the first; the same prior without attention cannot.
#[test]
fn attention_learns_what_the_convolutions_cannot_see() {
    let gpu = gpu();
    let mut rng = rng(27);
    let k = 8;
    let train = copied_corner_codes(&mut rng, 256, k);
    let test = copied_corner_codes(&mut rng, 64, k);
    // nats per code of a prior that predicts the last code (ln K for the first only), and of
    // one that cannot (ln K for the first and the last)
    let ideal = (k as f64).ln() / 16.0;
    let blind = 2.0 * ideal;
    let mut nll = Vec::new();
    for every in [0, 2] {
        let sizes = PixelCnnConfig {
            channels: 16,
            head: 32,
            ..attending(every, config(k, 4, 3, 0))
        };
        let mut trainer = PriorTrainer::new(&gpu, sizes, 1, 3e-3, 32, [2, 8]).unwrap();
        for _ in 0..600 {
            trainer.train_step_on(&train).unwrap();
        }
        nll.push(trainer.task.evaluate(&test, usize::MAX).unwrap());
    }
    let [without, with] = nll[..] else {
        unreachable!()
    };
    assert!(
        with < ideal + 0.25 * (blind - ideal),
        "with attention: test NLL {with} nats, ideal {ideal}, blind {blind}"
    );
    assert!(
        without > ideal + 0.75 * (blind - ideal),
        "without attention: test NLL {without} nats, ideal {ideal}, blind {blind}"
    );
}

#[test]
fn resuming_a_prior_continues_exactly() {
    let gpu = gpu();
    let mut rng = rng(23);
    let data = ruled_codes(&mut rng, 100, 6, true);
    for (sizes, schedule) in [
        (config(6, 2, 3, 2), LrSchedule::Constant),
        (attending(1, config(6, 3, 3, 2)), LrSchedule::Constant),
        (config(6, 2, 3, 2), LrSchedule::Cosine),
    ] {
        resume_is_exact(&gpu, &data, sizes, schedule);
    }
}

/// 3 steps, a checkpoint, a resume and 3 more steps of a prior of `sizes` whose learning rate
/// follows `schedule` over 6 steps give the parameters of 6 straight steps, bit for bit.
fn resume_is_exact(
    gpu: &vqgpu::Gpu,
    data: &CodeGrids,
    sizes: PixelCnnConfig,
    schedule: LrSchedule,
) {
    let gpu = gpu.clone();
    let make = || {
        let mut t = PriorTrainer::new(&gpu, sizes.clone(), 5, 1e-3, 16, [4, 4]).unwrap();
        t.run.adam.set_schedule(schedule, 6);
        t
    };
    let mut straight = make();
    for _ in 0..6 {
        straight.train_step_on(data).unwrap();
    }
    let mut first = make();
    for _ in 0..3 {
        first.train_step_on(data).unwrap();
    }
    let dir = std::env::temp_dir().join(format!("vqgpu-prior-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("prior.safetensors");
    first.checkpoint().unwrap().save(&path).unwrap();
    let mut resumed =
        PriorTrainer::from_checkpoint(&gpu, &Checkpoint::load(&path).unwrap()).unwrap();
    assert_eq!(resumed.run.step, 3);
    assert_eq!(resumed.run.adam.schedule(), (schedule, 6));
    for _ in 0..3 {
        resumed.train_step_on(data).unwrap();
    }
    let values = |t: &PriorTrainer| download(t.task.model.params.flat_buffers().0);
    assert_eq!(
        values(&resumed),
        values(&straight),
        "parameters differ after resume"
    );
    // the sampler loads the same model from the checkpoint
    let prior = Prior::load(&gpu, &path).unwrap();
    assert_eq!(prior.grid, [4, 4]);
    assert_eq!(prior.model.config, sizes);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sampling_is_reproducible_and_follows_what_the_prior_learned() {
    let gpu = gpu();
    let mut rng = rng(24);
    let k = 8;
    let train = ruled_codes(&mut rng, 512, k, true);
    let mut trainer = PriorTrainer::new(&gpu, config(k, 3, 3, 2), 2, 1e-2, 32, [4, 4]).unwrap();
    for _ in 0..200 {
        trainer.train_step_on(&train).unwrap();
    }
    let dir = std::env::temp_dir().join(format!("vqgpu-prior-sample-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("prior.safetensors");
    trainer.checkpoint().unwrap().save(&path).unwrap();
    let prior = Prior::load(&gpu, &path).unwrap();
    let labels: Vec<u32> = (0..64).map(|i| (i % 2) as u32).collect();
    let draw = |seed: u64, t: f32| -> Vec<f32> {
        download(
            &prior
                .sample_codes(Sampler::Cached, 64, Some(&labels), t, seed, 0)
                .unwrap(),
        )
    };
    let a = draw(7, 1.0);
    assert_eq!(a, draw(7, 1.0), "same seed, different samples");
    assert_ne!(a, draw(8, 1.0), "different seeds, same samples");
    // greedy decoding and samples should mostly follow their class's rule
    for (grids, what) in [(draw(1, 0.0), "greedy"), (a, "T=1")] {
        let follows = grids
            .chunks(16)
            .enumerate()
            .filter(|(i, g)| {
                (0..16).all(|p| g[p] as usize == rule(labels[*i], g[0] as usize, p / 4, p % 4, k))
            })
            .count();
        assert!(
            follows >= 48,
            "{what}: only {follows} of 64 samples follow the rule of their class"
        );
    }
    assert!(
        prior
            .sample_codes(Sampler::Cached, 4, None, 1.0, 0, 0)
            .is_err(),
        "a conditional prior needs classes"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_code_files_and_mismatched_models_are_refused_with_clear_errors() {
    let gpu = gpu();
    let mut file = Checkpoint::default();
    file.insert_i32("train.codes", &[2, 2, 2], vec![0, 1, 2, 3, 3, 2, 1, 0]);
    file.insert_i32("train.labels", &[2], vec![0, 1]);
    file.set("codebook_size", 4);
    file.set("classes", 2);
    let error = |ck: &Checkpoint| {
        CodeGrids::from_checkpoint(ck, "train")
            .unwrap_err()
            .to_string()
    };
    assert!(error(&file).contains("not a code file"), "{}", error(&file));
    file.set("format", vqgpu::data::CODES_FORMAT);
    let good = CodeGrids::from_checkpoint(&file, "train").unwrap();
    assert_eq!((good.len, good.grid, good.classes), (2, [2, 2], 2));
    assert!(
        CodeGrids::from_checkpoint(&file, "test").is_err(),
        "a missing split was accepted"
    );
    let mut out_of_range = file.clone();
    out_of_range.set("codebook_size", 3);
    assert!(
        error(&out_of_range).contains("outside the codebook"),
        "{}",
        error(&out_of_range)
    );
    let mut bad_labels = file.clone();
    bad_labels.insert_i32("train.labels", &[2], vec![0, 2]);
    assert!(
        error(&bad_labels).contains("labels"),
        "{}",
        error(&bad_labels)
    );
    // a prior built for other grids, codes or without the labels it needs
    let trainer = PriorTrainer::new(&gpu, config(4, 1, 3, 0), 0, 1e-3, 2, [3, 3]).unwrap();
    assert!(trainer
        .task
        .check_data(&good)
        .unwrap_err()
        .to_string()
        .contains("grids"));
    let conditional = PriorTrainer::new(&gpu, config(4, 1, 3, 3), 0, 1e-3, 2, [2, 2]).unwrap();
    let unlabelled = CodeGrids {
        labels: None,
        classes: 0,
        ..good.clone()
    };
    assert!(conditional
        .task
        .check_data(&unlabelled)
        .unwrap_err()
        .to_string()
        .contains("no labels"));
    assert!(
        PixelCnn::new(&gpu, config(4, 1, 4, 0), 0).is_err(),
        "even kernel accepted"
    );
    assert!(
        PixelCnn::new(&gpu, config(0, 1, 3, 0), 0).is_err(),
        "zero codes accepted"
    );
}

#[test]
fn attention_sizes_that_cannot_work_are_refused() {
    let gpu = gpu();
    let uneven_heads = PixelCnnConfig {
        heads: 3,
        ..attending(1, config(5, 2, 3, 0))
    };
    for (sizes, says) in [
        (attending(2, config(5, 2, 3, 0)), "needs more than 2 layers"),
        (
            uneven_heads,
            "the 3 attention heads must divide the 8 channels",
        ),
    ] {
        let e = PixelCnn::new(&gpu, sizes, 0).err().expect("refused");
        assert!(e.to_string().contains(says), "{e}");
    }
    // grids longer than the attention kernels' loops, and scores larger than a binding
    let sizes = attending(1, config(5, 2, 3, 0));
    let e = sizes.check_grid([256, 256]).unwrap_err().to_string();
    assert!(e.contains("at most 65535 positions, got 256x256"), "{e}");
    assert!(
        sizes.check_grid([255, 257]).is_ok() && config(5, 2, 3, 0).check_grid([256, 256]).is_ok()
    );
    // grids without positions, and odd bottom grids under a top grid
    for grid in [[0, 8], [8, 0], [0, 0]] {
        let e = config(5, 2, 3, 0).check_grid(grid).unwrap_err().to_string();
        assert!(e.contains("at least one position along each side"), "{e}");
    }
    let on_top = PixelCnnConfig {
        condition_codes: 7,
        ..config(5, 2, 3, 0)
    };
    let e = on_top.check_grid([8, 7]).unwrap_err().to_string();
    assert!(e.contains("even sides), got 8x7"), "{e}");
    assert!(on_top.check_grid([8, 6]).is_ok() && config(5, 2, 3, 0).check_grid([7, 1]).is_ok());
    let e = PriorTrainer::new(&gpu, config(5, 2, 3, 0), 0, 1e-3, 2, [0, 0])
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("got 0x0"), "{e}");
    assert_eq!(sizes.largest_activation(3, [32, 32]), 3 * 2 * 1024 * 1024);
    // 1024 grids of 32x32 codes: 8 GiB of scores, refused before a step
    let e = PriorTrainer::new(&gpu, sizes, 0, 1e-3, 1024, [32, 32])
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("max_storage_buffer_binding_size"), "{e}");
}

/// A training step's gradient of every masked stack weight is exactly zero at the kernel
/// positions its mask drops (on the GPU set those products run over the kept positions only and
/// write them into the zeroed gradient slots), with gradient reaching the positions kept; the
/// weight gradients of the larger cases are split along their sums.
#[test]
fn masked_weight_gradients_are_zero_where_the_masks_drop() {
    for gpu in kernel_set_gpus() {
        let mut rng = rng(91);
        for (b, [h, w], kernel) in [(1, [2, 2], 3), (8, [8, 8], 3), (2, [5, 6], 5)] {
            let what = format!(
                "{b} grids {h}x{w}, kernel {kernel}, kernels {}",
                gpu.kernel_set()
            );
            let k = 11;
            let model = random_prior(&gpu, &mut rng, config(k, 2, kernel, 0));
            let values: Vec<f32> = (0..b * h * w)
                .map(|_| rng.random_range(0..k) as f32)
                .collect();
            let codes = upload(&gpu, &[b, h, w], &values);
            let loss = vqgpu::ops::softmax::cross_entropy(&model.forward(&codes, None), &codes);
            model.params.zero_grad();
            loss.mean().backward();
            let mut checked = 0;
            for p in model.params.params() {
                let parts: Vec<&str> = p.name().split('.').collect();
                let [_, layer, stack @ ("vertical" | "horizontal"), "weight"] = parts[..] else {
                    continue;
                };
                // type A in layer 0 (strictly before the centre), type B after it
                let centre = kernel / 2;
                let kept = |ky: usize, kx: usize| {
                    let at = if stack == "vertical" { ky } else { kx };
                    at < centre || (at == centre && layer != "0")
                };
                let shape = p.shape();
                let (k_h, k_w) = (shape[2], shape[3]);
                let grad = download(&model.params.grad(p));
                let mut reached = false;
                for (i, g) in grad.iter().enumerate() {
                    let tap = i % (k_h * k_w);
                    if kept(tap / k_w, tap % k_w) {
                        reached |= *g != 0.0;
                    } else {
                        assert_eq!(*g, 0.0, "{} at {i}, {what}", p.name());
                    }
                }
                assert!(reached, "{} has no gradient, {what}", p.name());
                checked += 1;
            }
            assert_eq!(checked, 4, "two masked weights per layer, {what}");
        }
    }
}
