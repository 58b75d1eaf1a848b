//! The VQ-VAE end to end on the built-in dataset (reconstruction falls at least 5x, codebook in use),
//! exact resume from a checkpoint, and checkpoints of another architecture rejected clearly.

mod common;
use std::sync::Arc;

use common::*;
use vqgpu::data::{CodeFile, Dataset, Shapes, Split};
use vqgpu::io::checkpoint::Checkpoint;
use vqgpu::ops::reduce::mse_loss;
use vqgpu::train::{self, StepMetrics, TrainOptions, VqVaeTrainer};
use vqgpu::{autograd, Error, Tensor};

fn options(steps: u64, out: &std::path::Path) -> TrainOptions {
    test_run("shapes", steps, out)
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    fresh_dir("test", name)
}

/// Reconstruction MSE of a fixed batch of held-out images, without training.
fn eval_mse(trainer: &mut VqVaeTrainer, x: &Tensor) -> f32 {
    let _g = autograd::no_grad();
    let out = trainer.task.model.forward(x, false);
    mse_loss(&out.recon, x).item().unwrap()
}

#[test]
fn vqvae_learns_shapes_reconstructions_fall_5x_and_codes_are_used() {
    let gpu = gpu();
    let data: Arc<dyn Dataset> = Arc::new(Shapes::new(5, Split::Train));
    let test = Shapes::new(5, Split::Test);
    let per_image = 3 * 32 * 32;
    let mut held_out = vec![0f32; 16 * per_image];
    let mut bytes = vec![0u8; per_image];
    for i in 0..16 {
        test.image(i, &mut bytes);
        vqgpu::data::to_input(&bytes, &mut held_out[i * per_image..(i + 1) * per_image]);
    }
    let x = upload(&gpu, &[16, 3, 32, 32], &held_out);
    let variance = vqgpu::data::pixel_variance(data.as_ref(), 2000) as f32;
    let mut trainer = VqVaeTrainer::new(
        &gpu,
        small_vqvae(32, 128, 16),
        5,
        2e-3,
        16,
        [3, 32, 32],
        variance,
    )
    .unwrap();
    let before = eval_mse(&mut trainer, &x);
    let out = temp_dir("e2e");
    let mut log: Vec<StepMetrics> = Vec::new();
    let mut reported = 0;
    train::run(&mut trainer, data, &options(250, &out), &mut |_, logged| {
        reported += 1;
        if let Some((m, _)) = logged {
            log.push(*m)
        }
    })
    .unwrap();
    assert_eq!(reported, 250, "every step is reported");
    let after = eval_mse(&mut trainer, &x);
    let last = log.last().unwrap();
    println!("held-out MSE {before} -> {after}; last log {last:?}");
    assert!(
        before / after >= 5.0,
        "reconstruction MSE fell only from {before} to {after}"
    );
    assert!(
        last.perplexity > 40.0,
        "perplexity {} (codes used {})",
        last.perplexity,
        last.codes_used
    );
    // the run left its outputs behind
    for file in ["metrics.csv", "reconstructions.png", train::CHECKPOINT_FILE] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 10,
        "a header and one line per 25 steps"
    );
}

#[test]
fn resuming_from_a_checkpoint_continues_exactly() {
    let gpu = gpu();
    let data: Arc<dyn Dataset> = Arc::new(Shapes::new(1, Split::Test));
    let config = small_vqvae(8, 16, 4);
    let new = || VqVaeTrainer::new(&gpu, config.clone(), 3, 1e-3, 4, [3, 32, 32], 0.1).unwrap();
    let (straight_dir, split_dir) = (temp_dir("straight"), temp_dir("split"));
    let a = assert_resume_is_exact(&gpu, &new, data, &options, (&straight_dir, &split_dir));
    // names follow the reference PyTorch model
    for name in [
        "encoder.0.weight",
        "encoder.5.layers.0.block.1.weight",
        "pre_quantization.bias",
        "vq.embedding.weight",
        "vq.cluster_size",
        "vq.embed_avg",
        "decoder.1.layers.0.block.3.weight",
        "decoder.4.bias",
    ] {
        assert!(a.tensors.contains_key(name), "{name} missing");
    }
}

#[test]
fn checkpoints_of_another_architecture_are_rejected() {
    let gpu = gpu();
    let trainer =
        VqVaeTrainer::new(&gpu, small_vqvae(8, 16, 4), 0, 1e-3, 2, [3, 32, 32], 0.1).unwrap();
    let mut ck = trainer.checkpoint().unwrap();
    ck.set("hidden", 16);
    let err = VqVaeTrainer::from_checkpoint(&gpu, &ck)
        .err()
        .expect("shapes differ");
    assert!(
        matches!(err, Error::Checkpoint { .. }) && err.to_string().contains("another architecture"),
        "{err}"
    );
    ck.set("format", "something-else");
    let err = VqVaeTrainer::from_checkpoint(&gpu, &ck)
        .err()
        .expect("other format");
    assert!(err.to_string().contains("another architecture"), "{err}");
    let dir = temp_dir("ckpt");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("junk.safetensors"), b"not a checkpoint").unwrap();
    let err = Checkpoint::load(&dir.join("junk.safetensors")).expect_err("junk");
    assert!(err.to_string().contains("not a valid safetensors"), "{err}");
    let good = dir.join("good.safetensors");
    trainer.checkpoint().unwrap().save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&good, &bytes[..bytes.len() - 100]).unwrap();
    assert!(
        Checkpoint::load(&good).is_err(),
        "a truncated checkpoint must not load"
    );
    assert!(Checkpoint::load(&dir.join("missing.safetensors")).is_err());
}

#[test]
fn a_batch_too_large_for_the_adapter_is_refused_before_training() {
    let gpu = gpu();
    let batch = (gpu.max_binding_bytes() / (4 * 16 * 16 * 16)) as usize + 1;
    let err = VqVaeTrainer::new(
        &gpu,
        small_vqvae(32, 16, 4),
        0,
        1e-3,
        batch,
        [3, 32, 32],
        0.1,
    )
    .err()
    .expect("too large");
    assert!(
        matches!(err, Error::BufferTooLarge { .. }) && err.to_string().contains("smaller batch"),
        "{err}"
    );
}

#[test]
fn evaluation_reconstruction_and_encoding_agree_with_the_model() {
    let gpu = gpu();
    let data = Shapes::new(2, Split::Test);
    let trainer =
        VqVaeTrainer::new(&gpu, small_vqvae(8, 16, 4), 1, 1e-3, 4, [3, 32, 32], 0.1).unwrap();
    let mut model = trainer.task.model;
    let report = vqgpu::tasks::eval::evaluate(&mut model, &data, 7, 20).unwrap();
    let (orig, recon) = vqgpu::tasks::reconstruct::reconstruct(&mut model, &data, 20).unwrap();
    assert_eq!(
        (report.images, orig.len(), recon.len()),
        (20, 20 * 3072, 20 * 3072)
    );
    let mse: f64 = orig
        .iter()
        .zip(&recon)
        .map(|(a, b)| ((b.clamp(-0.5, 0.5) - a) as f64).powi(2))
        .sum::<f64>()
        / orig.len() as f64;
    assert!(
        (report.mse - mse).abs() < 1e-9 * mse.max(1.0),
        "{} vs {mse}",
        report.mse
    );
    assert!((report.psnr - 10.0 * (1.0 / mse).log10()).abs() < 1e-6);
    let [usage] = report.levels[..] else {
        panic!("one level expected, got {:?}", report.levels);
    };
    assert!(
        usage.perplexity >= 1.0
            && usage.perplexity <= 16.0
            && usage.codes_used > 0.0
            && usage.codes_used <= 1.0
    );
    // encoding: [N, 8, 8] codes in range, labels, and the same codes as a direct forward pass
    let mut file = CodeFile::new(16, "shapes", std::path::Path::new("vqvae.safetensors"));
    let subset = vqgpu::data::Shapes::new(2, Split::Test);
    vqgpu::tasks::encode::encode_into(&mut file, "test", &mut model, &subset, 500, usize::MAX)
        .unwrap();
    let codes = file.contents();
    let (shape, values) = codes.get_i32("test.codes").unwrap();
    assert_eq!(shape, &[2000, 8, 8]);
    assert!(values.iter().all(|&c| (0..16).contains(&c)));
    assert_eq!(codes.get_i32("test.labels").unwrap().0, &[2000]);
    let x = upload(&gpu, &[4, 3, 32, 32], &orig[..4 * 3072]);
    let direct = {
        let _g = autograd::no_grad();
        download(&model.forward(&x, false).quantized.codes)
    };
    let direct: Vec<i32> = direct.iter().map(|&c| c as i32).collect();
    assert_eq!(&values[..4 * 64], &direct[..]);
}

#[test]
fn checkpoint_tensors_match_the_pytorch_reference_state_dict() {
    // the names and shapes VQVAE(c=3, h=32, rh=16, nres=2, k=64, d=8, ema=True) of
    // scripts/torch_vqvae.py registers, written out from its module structure
    let (c, h, rh, k, d) = (3, 32, 16, 64, 8);
    let mut want: Vec<(String, Vec<usize>)> = vec![
        ("encoder.0.weight".into(), vec![h / 2, c, 4, 4]),
        ("encoder.0.bias".into(), vec![h / 2]),
        ("encoder.2.weight".into(), vec![h, h / 2, 4, 4]),
        ("encoder.2.bias".into(), vec![h]),
        ("encoder.4.weight".into(), vec![h, h, 3, 3]),
        ("encoder.4.bias".into(), vec![h]),
        ("pre_quantization.weight".into(), vec![d, h, 1, 1]),
        ("pre_quantization.bias".into(), vec![d]),
        ("vq.embedding.weight".into(), vec![k, d]),
        ("vq.cluster_size".into(), vec![k]),
        ("vq.embed_avg".into(), vec![k, d]),
        ("decoder.0.weight".into(), vec![d, h, 3, 3]),
        ("decoder.0.bias".into(), vec![h]),
        ("decoder.2.weight".into(), vec![h, h / 2, 4, 4]),
        ("decoder.2.bias".into(), vec![h / 2]),
        ("decoder.4.weight".into(), vec![h / 2, c, 4, 4]),
        ("decoder.4.bias".into(), vec![c]),
    ];
    for stack in ["encoder.5", "decoder.1"] {
        for layer in 0..2 {
            want.push((
                format!("{stack}.layers.{layer}.block.1.weight"),
                vec![rh, h, 3, 3],
            ));
            want.push((
                format!("{stack}.layers.{layer}.block.3.weight"),
                vec![h, rh, 1, 1],
            ));
        }
    }
    let gpu = gpu();
    let mut config = small_vqvae(h, k, d);
    config.res_layers = 2;
    let ck = VqVaeTrainer::new(&gpu, config, 0, 1e-3, 2, [3, 32, 32], 0.1)
        .unwrap()
        .checkpoint()
        .unwrap();
    let ours: Vec<(String, Vec<usize>)> = ck
        .tensors
        .iter()
        .filter(|(name, _)| !name.starts_with("optimizer.") && name.as_str() != "vq.unused_steps")
        .map(|(name, (shape, _))| (name.clone(), shape.clone()))
        .collect();
    want.sort();
    assert_eq!(ours, want);
}
