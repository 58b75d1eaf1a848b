//! VQ-VAE-2: its checkpoint names and layouts against the PyTorch implementation's `state_dict`,
//! the shapes of both code levels, a checkpoint round trip, learning end to end on `shapes` at
//! 64x64 and exact resume.

mod common;
use std::sync::Arc;

use common::*;
use vqgpu::data::{DataSpec, Dataset, Shapes, Split};
use vqgpu::io::checkpoint::Checkpoint;
use vqgpu::models::vqvae::VqVaeConfig;
use vqgpu::models::vqvae2::VqVae2;
use vqgpu::models::CodeModel;
use vqgpu::ops::reduce::mse_loss;
use vqgpu::train::{self, TrainOptions, Vqvae2Metrics, Vqvae2Trainer};
use vqgpu::{autograd, Tensor};

fn options(steps: u64, out: &std::path::Path) -> TrainOptions {
    test_run("shapes@64", steps, out)
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    fresh_dir("test2", name)
}

/// The first `n` images of `data` as a model input.
fn images(gpu: &vqgpu::gpu::Gpu, data: &dyn Dataset, n: usize) -> Tensor {
    let [c, h, w] = data.image_shape();
    let per_image = c * h * w;
    let mut values = vec![0f32; n * per_image];
    let mut bytes = vec![0u8; per_image];
    for i in 0..n {
        data.image(i, &mut bytes);
        vqgpu::data::to_input(&bytes, &mut values[i * per_image..(i + 1) * per_image]);
    }
    upload(gpu, &[n, c, h, w], &values)
}

/// The names and shapes of `VQVAE(in_channel=3, channel=h, n_res_block=2, n_res_channel=rh,
/// embed_dim=d, n_embed=k)` of rosinality/vq-vae-2-pytorch's vqvae.py, written out from its module
/// structure (`nn.Sequential` indices included).
fn pytorch_state_dict(
    c: usize,
    h: usize,
    rh: usize,
    d: usize,
    k: usize,
) -> Vec<(String, Vec<usize>)> {
    let mut want: Vec<(String, Vec<usize>)> = Vec::new();
    let mut conv = |name: &str, shape: Vec<usize>, bias: usize| {
        want.push((format!("{name}.weight"), shape));
        want.push((format!("{name}.bias"), vec![bias]));
    };
    // bottom encoder, stride 4: conv, ReLU, conv, ReLU, conv, 2 residual blocks, ReLU
    conv("enc_b.blocks.0", vec![h / 2, c, 4, 4], h / 2);
    conv("enc_b.blocks.2", vec![h, h / 2, 4, 4], h);
    conv("enc_b.blocks.4", vec![h, h, 3, 3], h);
    // top encoder, stride 2: conv, ReLU, conv, 2 residual blocks, ReLU
    conv("enc_t.blocks.0", vec![h / 2, h, 4, 4], h / 2);
    conv("enc_t.blocks.2", vec![h, h / 2, 3, 3], h);
    conv("quantize_conv_t", vec![d, h, 1, 1], d);
    // top decoder, stride 2: conv, 2 residual blocks, ReLU, transposed conv
    conv("dec_t.blocks.0", vec![h, d, 3, 3], h);
    conv("dec_t.blocks.4", vec![h, d, 4, 4], d);
    conv("quantize_conv_b", vec![d, d + h, 1, 1], d);
    conv("upsample_t", vec![d, d, 4, 4], d);
    // decoder, stride 4: conv, 2 residual blocks, ReLU, transposed conv, ReLU, transposed conv
    conv("dec.blocks.0", vec![h, 2 * d, 3, 3], h);
    conv("dec.blocks.4", vec![h, h / 2, 4, 4], h / 2);
    conv("dec.blocks.6", vec![h / 2, c, 4, 4], c);
    for (sequence, first) in [
        ("enc_b.blocks", 5),
        ("enc_t.blocks", 3),
        ("dec_t.blocks", 1),
        ("dec.blocks", 1),
    ] {
        for block in first..first + 2 {
            conv(&format!("{sequence}.{block}.conv.1"), vec![rh, h, 3, 3], rh);
            conv(&format!("{sequence}.{block}.conv.3"), vec![h, rh, 1, 1], h);
        }
    }
    for level in ["quantize_t", "quantize_b"] {
        want.push((format!("{level}.embed"), vec![d, k]));
        want.push((format!("{level}.cluster_size"), vec![k]));
        want.push((format!("{level}.embed_avg"), vec![d, k]));
    }
    want.sort();
    want
}

#[test]
fn checkpoint_tensors_match_the_pytorch_implementation_state_dict() {
    let gpu = gpu();
    let (c, h, rh, d, k) = (3, 32, 8, 16, 24);
    let config = VqVaeConfig {
        hidden: h,
        res_hidden: rh,
        res_layers: 2,
        codebook_size: k,
        code_dim: d,
        ..small_vqvae(h, k, d)
    };
    let model = VqVae2::new(&gpu, config, 4).unwrap();
    let mut ck = Checkpoint::default();
    model.write_state(&mut ck).unwrap();
    let mut got: Vec<(String, Vec<usize>)> = ck
        .tensors
        .iter()
        .filter(|(name, _)| !name.ends_with(".unused_steps"))
        .map(|(name, (shape, _))| (name.clone(), shape.clone()))
        .collect();
    got.sort();
    assert_eq!(got, pytorch_state_dict(c, h, rh, d, k));
    // `embed` is the codebook transposed: column j is code j
    let codebook = download(model.top.codebook.weight.tensor());
    let embed = &ck.tensors["quantize_t.embed"].1;
    for (code, dim) in [(0, 0), (5, 3), (k - 1, d - 1)] {
        assert_eq!(embed[dim * k + code], codebook[code * d + dim]);
    }
}

#[test]
fn both_levels_have_their_shapes_and_a_checkpoint_round_trip_gives_the_same_model() {
    let gpu = gpu();
    let data = Shapes::new(3, Split::Test).with_side(64).unwrap();
    let x = images(&gpu, &data, 2);
    let mut model = VqVae2::new(&gpu, small_vqvae(16, 32, 8), 7).unwrap();
    let _g = autograd::no_grad();
    let (recon, codes) = model.reconstruct(&x);
    assert_eq!(recon.shape(), [2, 3, 64, 64]);
    let shapes: Vec<&[usize]> = codes.iter().map(|c| c.shape()).collect();
    assert_eq!(shapes, [&[2, 8, 8][..], &[2, 16, 16]], "top, bottom");
    // decoding the codes gives the reconstruction
    let decoded = model.decode_codes(&codes[0], &codes[1]);
    assert_eq!(download(&decoded), download(&recon));
    let mut ck = Checkpoint::default();
    model.write_state(&mut ck).unwrap();
    let mut loaded = VqVae2::from_checkpoint(&gpu, &ck).unwrap();
    let (again, again_codes) = loaded.reconstruct(&x);
    assert_eq!(download(&again), download(&recon));
    assert_eq!(download(&again_codes[1]), download(&codes[1]));
    let mut ck2 = Checkpoint::default();
    loaded.write_state(&mut ck2).unwrap();
    assert_eq!(ck.tensors, ck2.tensors);
    assert_eq!(ck.metadata, ck2.metadata);
    // the one-level model's commands say what a VQ-VAE-2 checkpoint is
    let err = vqgpu::models::vqvae::VqVae::from_checkpoint(&gpu, &ck)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("is a VQ-VAE-2 checkpoint"), "{err}");
    // images whose sides are not multiples of 8 are refused
    let err = vqgpu::models::vqvae2::check_images(&model.config, [3, 36, 36]).unwrap_err();
    assert!(err.to_string().contains("multiples of 8"), "{err}");
}

/// A small VQ-VAE-2 on `shapes` at 64x64: held-out reconstruction MSE falls at least 3.5x in 200
/// steps at batch 8 (4.7x on lavapipe), and both levels use more than two codes' worth of
/// perplexity (17.5 each on lavapipe).
#[test]
fn vqvae2_learns_shapes_at_64_and_both_levels_use_their_codes() {
    let gpu = gpu();
    let data: Arc<dyn Dataset> = Arc::new(Shapes::new(5, Split::Train).with_side(64).unwrap());
    let test = Shapes::new(5, Split::Test).with_side(64).unwrap();
    let x = images(&gpu, &test, 8);
    let variance = vqgpu::data::pixel_variance(data.as_ref(), 500) as f32;
    let mut trainer = Vqvae2Trainer::new(
        &gpu,
        small_vqvae(16, 32, 8),
        5,
        2e-3,
        8,
        [3, 64, 64],
        variance,
    )
    .unwrap();
    let mse = |trainer: &mut Vqvae2Trainer| {
        let _g = autograd::no_grad();
        let out = trainer.task.model.forward(&x, false);
        mse_loss(&out.recon, &x).item().unwrap()
    };
    let before = mse(&mut trainer);
    let out = temp_dir("e2e");
    let mut log: Vec<Vqvae2Metrics> = Vec::new();
    train::run(&mut trainer, data, &options(200, &out), &mut |_, logged| {
        if let Some((m, _)) = logged {
            log.push(*m)
        }
    })
    .unwrap();
    let after = mse(&mut trainer);
    let last = log.last().unwrap();
    println!("held-out MSE {before} -> {after}; last log {last}");
    assert!(
        before / after >= 3.5,
        "MSE fell only from {before} to {after}"
    );
    for (name, level) in [("top", last.top), ("bottom", last.bottom)] {
        assert!(level.perplexity > 2.0, "{name} level: {level:?}");
    }
    for file in ["metrics.csv", "curves.png", train::CHECKPOINT_FILE] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    // `eval vqvae` reads the checkpoint: the same MSE scale, both levels' usage
    let eval = |image_size| {
        vqgpu::tasks::eval::vqvae(
            &gpu,
            &vqgpu::tasks::eval::EvalOptions {
                checkpoint: out.join(train::CHECKPOINT_FILE),
                data: DataSpec {
                    image_size,
                    ..DataSpec::default()
                },
                batch: 16,
                limit: 32,
            },
        )
    };
    let report = eval(Some(64)).unwrap();
    assert_eq!(report.levels.len(), 2);
    assert!(report.mse < 2.0 * after as f64, "{report:?}");
    // images of another size than the training ones are refused
    let err = eval(None).unwrap_err().to_string();
    assert!(err.contains("was trained on 3x64x64 images"), "{err}");
    priors_learn_the_codes_and_sample(&gpu, &mut trainer.task.model, &test, &out);
    std::fs::remove_dir_all(&out).ok();
}

/// The priors of a trained VQ-VAE-2 learn its codes: 256 train and 128 test images encoded, the
/// top codes' PixelSNAIL-style prior and the bottom codes' prior given them trained 100 steps
/// each; both test NLLs fall below the unigram entropy of their test codes (on lavapipe 2.1 and
/// 1.7 nats against 3.0 and 3.1), and samples of both levels are written.
fn priors_learn_the_codes_and_sample(
    gpu: &vqgpu::Gpu,
    model: &mut VqVae2,
    test: &Shapes,
    out: &std::path::Path,
) {
    use vqgpu::data::{CodeFile, CodeGrids, CodeLevel};
    use vqgpu::models::pixelcnn::PixelCnnConfig;
    use vqgpu::tasks::sample::{self, SampleOptions, Sampler};
    use vqgpu::tasks::train::{prior, PriorOptions, RunOptions};
    let codes = out.join("codes.safetensors");
    let k = model.config.codebook_size;
    let mut file = CodeFile::new(k, "shapes@64", &out.join(train::CHECKPOINT_FILE));
    let train_data = Shapes::new(5, Split::Train).with_side(64).unwrap();
    for (split, data, limit) in [("train", &train_data, 256), ("test", test, 128)] {
        vqgpu::tasks::encode::encode_into(&mut file, split, model, data, 16, limit).unwrap();
    }
    file.save(&codes).unwrap();
    let learned = |level, name: &str, attention_every, condition_on_top| {
        let report = prior(
            gpu,
            &PriorOptions {
                codes: codes.clone(),
                run: RunOptions {
                    steps: 100,
                    batch: 16,
                    lr: 2e-3,
                    lr_schedule: vqgpu::nn::LrSchedule::Constant,
                    seed: 0,
                    out: Some(out.join(name)),
                    resume: None,
                    log_every: 50,
                    sample_every: 0,
                    save_every: 0,
                    overwrite: false,
                },
                model: PixelCnnConfig {
                    channels: 16,
                    layers: 3,
                    head: 32,
                    attention_every,
                    heads: 2,
                    ..PixelCnnConfig::default()
                },
                conditional: true,
                eval_grids: 64,
                level,
                condition_on_top,
            },
        )
        .unwrap();
        let ck = Checkpoint::load(&codes).unwrap();
        let unigram = CodeGrids::of_level(&ck, "test", level)
            .unwrap()
            .unigram_entropy();
        println!(
            "{name}: test NLL {} nats, unigram {unigram}",
            report.test_nll
        );
        assert!(
            report.test_nll < unigram,
            "{name}: test NLL {} nats, not below the unigram entropy {unigram}",
            report.test_nll
        );
        report.run.checkpoint
    };
    let top = learned(CodeLevel::Top, "top", 1, false);
    let bottom = learned(CodeLevel::Bottom, "bottom", 0, true);
    let mut ck = Checkpoint::default();
    model.write_state(&mut ck).unwrap();
    ck.save(&out.join("vqvae2.safetensors")).unwrap();
    let images = sample::run(
        gpu,
        &SampleOptions {
            vqvae: out.join("vqvae2.safetensors"),
            prior: top,
            bottom_prior: Some(bottom),
            count: 4,
            temperature: 1.0,
            class: None,
            seed: 0,
            sampler: Sampler::Cached,
            out: out.join("samples.png"),
        },
    )
    .unwrap();
    assert_eq!(images.len(), 4 * 3 * 64 * 64);
    assert!(out.join("samples.png").is_file());
}

#[test]
fn resuming_a_vqvae2_continues_exactly() {
    let gpu = gpu();
    let data: Arc<dyn Dataset> = Arc::new(Shapes::new(1, Split::Test).with_side(64).unwrap());
    let new =
        || Vqvae2Trainer::new(&gpu, small_vqvae(8, 16, 4), 3, 1e-3, 2, [3, 64, 64], 0.1).unwrap();
    let (straight_dir, split_dir) = (temp_dir("straight"), temp_dir("split"));
    assert_resume_is_exact(&gpu, &new, data, &options, (&straight_dir, &split_dir));
    for dir in [straight_dir, split_dir] {
        std::fs::remove_dir_all(dir).ok();
    }
}

/// `encode` of a VQ-VAE-2 writes both levels' grids (the same codes as a forward pass) and a
/// prior trains on either level; a resume on the other level is refused, and a one-level code
/// file has no top codes.
#[test]
fn both_levels_are_encoded_and_a_prior_trains_on_either() {
    use vqgpu::data::{CodeFile, CodeGrids, CodeLevel};
    use vqgpu::models::pixelcnn::PixelCnnConfig;
    use vqgpu::tasks::train::{prior, PriorOptions, RunOptions};
    let gpu = gpu();
    let data = Shapes::new(2, Split::Test).with_side(64).unwrap();
    let mut model = VqVae2::new(&gpu, small_vqvae(8, 16, 4), 1).unwrap();
    let dir = temp_dir("codes");
    std::fs::create_dir_all(&dir).unwrap();
    let mut file = CodeFile::new(16, "shapes@64", &dir.join("vqvae2.safetensors"));
    for split in ["train", "test"] {
        vqgpu::tasks::encode::encode_into(&mut file, split, &mut model, &data, 4, 10).unwrap();
    }
    let (_, levels) = {
        let _g = autograd::no_grad();
        model.reconstruct(&images(&gpu, &data, 10))
    };
    let ck = file.contents();
    for (level, codes, grid) in [
        (CodeLevel::Top, &levels[0], [8, 8]),
        (CodeLevel::Bottom, &levels[1], [16, 16]),
    ] {
        let grids = CodeGrids::of_level(ck, "train", level).unwrap();
        assert_eq!((grids.len, grids.grid), (10, grid), "{level:?}");
        assert_eq!(grids.codes, download(codes), "{level:?}");
        assert_eq!(grids.labels.as_ref().map(Vec::len), Some(10));
    }
    let path = dir.join("codes.safetensors");
    file.save(&path).unwrap();
    let options = |level, steps, resume: Option<std::path::PathBuf>, conditioned| PriorOptions {
        codes: path.clone(),
        run: RunOptions {
            steps,
            batch: 4,
            lr: 1e-3,
            lr_schedule: vqgpu::nn::LrSchedule::Constant,
            seed: 0,
            // a resumed run writes into the directory it resumes
            out: resume
                .is_none()
                .then(|| dir.join(if conditioned { "conditioned" } else { "prior" })),
            resume: resume.clone(),
            log_every: 2,
            sample_every: 0,
            save_every: 0,
            overwrite: false,
        },
        // the top codes' prior attends (PixelSNAIL-style)
        model: PixelCnnConfig {
            channels: 8,
            layers: 2,
            head: 16,
            attention_every: usize::from(level == CodeLevel::Top),
            heads: 2,
            ..PixelCnnConfig::default()
        },
        conditional: false,
        eval_grids: 4,
        level,
        condition_on_top: conditioned,
    };
    let report = prior(&gpu, &options(CodeLevel::Top, 2, None, false)).unwrap();
    assert!(report.test_nll.is_finite());
    let ck = Checkpoint::load(&report.run.checkpoint).unwrap();
    assert!(ck.tensors.contains_key("layers.0.attention.query.weight"));
    let resume_bottom = options(CodeLevel::Bottom, 4, Some(dir.join("prior")), false);
    let err = prior(&gpu, &resume_bottom).unwrap_err().to_string();
    assert!(err.contains("top codes of shapes@64"), "{err}");
    // the bottom prior conditioned on the top grids trains, and resumes with its conditioning
    let report = prior(&gpu, &options(CodeLevel::Bottom, 2, None, true)).unwrap();
    assert!(report.test_nll.is_finite());
    let ck = Checkpoint::load(&report.run.checkpoint).unwrap();
    assert_eq!(ck.meta("condition_codes").unwrap(), "16");
    let resumed = options(CodeLevel::Bottom, 3, Some(dir.join("conditioned")), false);
    assert!(prior(&gpu, &resumed).unwrap().test_nll.is_finite());
    let err = prior(&gpu, &options(CodeLevel::Top, 2, None, true)).unwrap_err();
    assert!(err.to_string().contains("leave --level top out"), "{err}");
    // sampling: top grids from the top prior, bottom grids given them, decoded; both samplers
    // draw the same images, and the bottom prior is required
    use vqgpu::tasks::sample::{self, SampleOptions, Sampler, Sampling, SamplingRequest};
    let mut ck = Checkpoint::default();
    model.write_state(&mut ck).unwrap();
    ck.save(&dir.join("vqvae2.safetensors")).unwrap();
    let sample_options = |sampler, bottom_prior| SampleOptions {
        vqvae: dir.join("vqvae2.safetensors"),
        prior: dir.join("prior").join(train::CHECKPOINT_FILE),
        bottom_prior,
        count: 3,
        temperature: 1.0,
        class: None,
        seed: 5,
        sampler,
        out: dir.join("samples.png"),
    };
    let bottom = Some(dir.join("conditioned").join(train::CHECKPOINT_FILE));
    let cached = sample::run(&gpu, &sample_options(Sampler::Cached, bottom.clone())).unwrap();
    assert_eq!(cached.len(), 3 * 3 * 64 * 64);
    assert!(dir.join("samples.png").is_file());
    let full = sample::run(&gpu, &sample_options(Sampler::Full, bottom)).unwrap();
    assert_eq!(cached, full, "the samplers drew different images");
    let err = sample::run(&gpu, &sample_options(Sampler::Cached, None)).unwrap_err();
    assert!(err.to_string().contains("--bottom-prior"), "{err}");
    // the bottom grids draw other noise than the top grids: at a temperature so high that the
    // draw is the noise's argmax, the same noise would give the bottom grids' first positions the
    // top grids' codes (both levels have 16 codes)
    let sampling = Sampling::load(
        &gpu,
        &dir.join("vqvae2.safetensors"),
        &dir.join("prior").join(train::CHECKPOINT_FILE),
        Some(&dir.join("conditioned").join(train::CHECKPOINT_FILE)),
    )
    .unwrap();
    let request = SamplingRequest {
        sampler: Sampler::Cached,
        count: 4,
        labels: None,
        temperature: 1e9,
        seed: 5,
        first: 0,
    };
    let drawn = sampling.draw(&request, false).unwrap();
    let top = download(drawn.top_grids.as_ref().unwrap());
    let bottom = download(&drawn.grids);
    let same = (0..4)
        .flat_map(|i| (0..64).map(move |j| (i, j)))
        .filter(|&(i, j)| top[i * 64 + j] == bottom[i * 256 + j])
        .count();
    assert!(
        same < 64,
        "{same} of 256 first bottom codes equal the top codes"
    );
    // a one-level VQ-VAE's file has no top codes
    let mut one = CodeFile::new(16, "shapes", &dir.join("vqvae.safetensors"));
    one.add_split("train", vec![0; 4], [1, 2, 2], None);
    let err = CodeGrids::of_level(one.contents(), "train", CodeLevel::Top).unwrap_err();
    assert!(err.to_string().contains("has no top codes"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
