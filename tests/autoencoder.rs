//! The AE, denoising AE and VAE on the shared conv trunk: each learns the built-in dataset in a
//! short run, and the VAE's loss is its reconstruction NLL plus beta times its KL.

mod common;
use common::*;
use vqgpu::autograd;
use vqgpu::data::{batch_indices, Batch, Dataset, Shapes, Split};
use vqgpu::models::autoencoder::{
    AeKind, Autoencoder, AutoencoderConfig, Bottleneck, Corruption, Recon,
};
use vqgpu::nn::Adam;
use vqgpu::Tensor;

/// Images `indices` of `data` as model input.
fn batch(data: &Shapes, indices: &[usize]) -> Vec<f32> {
    Batch::gather(data, indices, 0).image_inputs()
}

fn config(bottleneck: Bottleneck, kind: AeKind) -> AutoencoderConfig {
    AutoencoderConfig {
        image_shape: [3, 32, 32],
        hidden: 16,
        res_hidden: 8,
        res_layers: 1,
        bottleneck,
        kind,
    }
}

#[test]
fn every_relative_learns_and_the_vae_loss_is_its_elbo_terms() {
    let gpu = gpu();
    let train = Shapes::new(0, Split::Train);
    let test = Shapes::new(0, Split::Test);
    let held_out = upload(
        &gpu,
        &[32, 3, 32, 32],
        &batch(&test, &(0..32).collect::<Vec<_>>()),
    );
    let variance = 0.06;
    let vae = |beta, recon| AeKind::Variational { beta, recon };
    let cases = [
        (
            "ae spatial",
            Bottleneck::Spatial { channels: 8 },
            AeKind::Plain,
        ),
        (
            "dae mask",
            Bottleneck::Spatial { channels: 8 },
            AeKind::Denoising(Corruption::Mask(0.25)),
        ),
        (
            "dae noise",
            Bottleneck::Spatial { channels: 8 },
            AeKind::Denoising(Corruption::Gaussian(0.1)),
        ),
        (
            "vae flat mse",
            Bottleneck::Flat { dim: 32 },
            vae(1.0, Recon::Mse),
        ),
        (
            "vae spatial bce",
            Bottleneck::Spatial { channels: 4 },
            vae(0.5, Recon::Bce),
        ),
    ];
    for (what, bottleneck, kind) in cases {
        let model = Autoencoder::new(&gpu, config(bottleneck, kind), 1).unwrap();
        let eval = |model: &Autoencoder| {
            let _g = autograd::no_grad();
            let out = model.forward(&held_out, 99, variance, false);
            (
                out.mse.item().unwrap(),
                out.kl.map(|k| k.item().unwrap()),
                out.recon_nll.map(|r| r.item().unwrap()),
                out.loss.item().unwrap(),
            )
        };
        let (before, _, _, loss_before) = eval(&model);
        let mut adam = Adam::new(3e-3);
        let x = Tensor::zeros(&gpu, &[8, 3, 32, 32]);
        for step in 0..60 {
            x.write(&batch(&train, &batch_indices(train.len(), 8, 3, step)))
                .unwrap();
            model.params.zero_grad();
            model.forward(&x, step, variance, true).loss.backward();
            adam.step(&model.params);
        }
        let (after, kl, nll, loss) = eval(&model);
        // the VAE trades reconstruction for its KL term (and Bernoulli cross-entropy on grey
        // levels has a high floor): a lower bar on its MSE, and its loss must fall
        let factor = match kind {
            AeKind::Variational { .. } => 1.25,
            _ => 2.0,
        };
        assert!(
            after * factor < before && loss < loss_before,
            "{what}: held-out MSE {before} -> {after}, loss {loss_before} -> {loss}"
        );
        if let AeKind::Variational { beta, .. } = kind {
            let (kl, nll) = (kl.unwrap(), nll.unwrap());
            assert!(kl > 0.0 && kl.is_finite(), "{what}: KL {kl}");
            let want = nll + beta * kl;
            assert!(
                (loss - want).abs() <= 1e-4 * want.abs(),
                "{what}: loss {loss} != {want}"
            );
        }
    }
}

#[test]
fn autoencoder_configs_a_user_can_get_wrong_are_refused() {
    let gpu = gpu();
    let mut c = config(Bottleneck::Flat { dim: 0 }, AeKind::Plain);
    assert!(Autoencoder::new(&gpu, c.clone(), 0).is_err(), "zero latent");
    c.bottleneck = Bottleneck::Flat { dim: 4 };
    c.kind = AeKind::Denoising(Corruption::Mask(1.0));
    assert!(Autoencoder::new(&gpu, c.clone(), 0).is_err(), "mask prob 1");
    c.kind = AeKind::Variational {
        beta: -1.0,
        recon: Recon::Mse,
    };
    assert!(
        Autoencoder::new(&gpu, c.clone(), 0).is_err(),
        "negative beta"
    );
    c.kind = AeKind::Plain;
    c.image_shape = [1, 30, 30];
    assert!(Autoencoder::new(&gpu, c, 0).is_err(), "30x30 images");
}

#[test]
fn resuming_a_vae_or_dae_continues_exactly_noise_included() {
    use vqgpu::io::checkpoint::Checkpoint;
    use vqgpu::train::AeTrainer;
    let gpu = gpu();
    let train = Shapes::new(0, Split::Train);
    let kinds = [
        AeKind::Denoising(Corruption::Gaussian(0.1)),
        AeKind::Variational {
            beta: 1.0,
            recon: Recon::Bce,
        },
    ];
    for kind in kinds {
        let make = || {
            let c = config(Bottleneck::Flat { dim: 8 }, kind);
            AeTrainer::new(&gpu, c, 4, 1e-3, 4, 0.06).unwrap()
        };
        let images =
            |step: u64| Batch::gather(&train, &batch_indices(train.len(), 4, 4, step), step);
        let mut straight = make();
        for step in 0..6 {
            straight.train_step(&images(step)).unwrap();
        }
        let mut first = make();
        for step in 0..3 {
            first.train_step(&images(step)).unwrap();
        }
        let dir = std::env::temp_dir().join(format!("vqgpu-ae-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ae.safetensors");
        first.checkpoint().unwrap().save(&path).unwrap();
        let mut resumed =
            AeTrainer::from_checkpoint(&gpu, &Checkpoint::load(&path).unwrap()).unwrap();
        assert_eq!(resumed.task.model.config, straight.task.model.config);
        for step in 3..6 {
            resumed.train_step(&images(step)).unwrap();
        }
        let values = |t: &AeTrainer| download(t.task.model.params.flat_buffers().0);
        assert_eq!(
            values(&resumed),
            values(&straight),
            "{kind:?}: parameters differ"
        );
        // what `sample --vae` does: decode z ~ N(0, I) into images in the pixel range
        if let AeKind::Variational { .. } = kind {
            let _g = autograd::no_grad();
            let model = &resumed.task.model;
            let z = vqgpu::ops::latent::normal(&gpu, &model.latent_shape(5), 1, 0.0, 1.0);
            let images = download(&model.decode(&z));
            assert_eq!(images.len(), 5 * 3 * 32 * 32);
            assert!(
                images.iter().all(|v| (-0.5..=0.5).contains(v)),
                "samples out of range"
            );
        }
        let m = resumed.take_metrics().unwrap().unwrap();
        assert_eq!(m.step, 6);
        assert_eq!(m.kl.is_some(), matches!(kind, AeKind::Variational { .. }));
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn posterior_means_and_the_scatter_plot_of_a_2d_vae() {
    let gpu = gpu();
    let test = Shapes::new(0, Split::Test);
    let kind = AeKind::Variational {
        beta: 1.0,
        recon: Recon::Mse,
    };
    let model = Autoencoder::new(&gpu, config(Bottleneck::Flat { dim: 2 }, kind), 3).unwrap();
    let (means, labels) = vqgpu::tasks::latent_map::posterior_means(&model, &test, 4, 10).unwrap();
    assert_eq!((means.len(), labels.len()), (10, 10));
    // the means are the first two of the encoder's four statistics per image
    let x = upload(
        &gpu,
        &[10, 3, 32, 32],
        &batch(&test, &(0..10).collect::<Vec<_>>()),
    );
    let stats = {
        let _g = autograd::no_grad();
        download(&model.encode(&x))
    };
    for (i, m) in means.iter().enumerate() {
        assert_eq!(m.len(), 2);
        assert_close(m, &f64s(&stats[i * 4..i * 4 + 2]), 1e-5, 1e-6, "means");
        assert_eq!(labels[i], test.label(i).unwrap());
    }
    let path = std::env::temp_dir().join(format!("vqgpu-scatter-{}.png", std::process::id()));
    let points: Vec<(f64, f64)> = means.iter().map(|m| (m[0] as f64, m[1] as f64)).collect();
    vqgpu::io::plot::save_scatter(&path, "means", &points, &labels).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (700, 560));
    // some pixels carry a label colour (not white, not ink)
    assert!(img
        .pixels()
        .any(|p| p.0 == [31, 119, 180] || p.0 == [255, 127, 14]));
    std::fs::remove_file(&path).ok();
}
