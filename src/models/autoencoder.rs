//! The VQ-VAE's simpler relatives on the same conv encoder and decoder: a plain autoencoder, a
//! denoising autoencoder (input corrupted on the GPU) and a VAE (reparameterization with GPU
//! noise, KL term), with a spatial (1x1 conv) or flat (Linear) bottleneck.

use crate::error::{Error, Result, Setting};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::models::trunk::{ConvDecoder, ConvEncoder, TrunkSizes};
use crate::models::{check_image_shape, check_trunk};
use crate::nn::{Conv2d, FlatBuffer, Linear, ParamStore};
use crate::ops::conv::Conv2dOptions;
use crate::ops::{elementwise, latent, reduce};
use crate::tensor::Tensor;

/// Where the code lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bottleneck {
    /// `channels` latent maps of H/4 x W/4 (a 1x1 conv in and out of the trunk).
    Spatial {
        /// Latent channels.
        channels: usize,
    },
    /// A `dim`-vector per image (Linear layers in and out of the trunk).
    Flat {
        /// Latent dimension.
        dim: usize,
    },
}

/// How a denoising autoencoder corrupts its input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Corruption {
    /// Each pixel is set to black with this probability.
    Mask(f32),
    /// Gaussian noise of this standard deviation (in [0, 1] pixel units) is added.
    Gaussian(f32),
}

/// The VAE's reconstruction likelihood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recon {
    /// Gaussian with the data variance: squared error / (2 variance) per pixel.
    Mse,
    /// Bernoulli on pixel intensities in [0, 1]: the decoder gives logits.
    Bce,
}

/// Which model of the family.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AeKind {
    /// Reconstruction loss only.
    Plain,
    /// Reconstructs the clean image from a corrupted one.
    Denoising(Corruption),
    /// Encoder gives mean and log-variance; loss = reconstruction NLL + beta * KL.
    Variational {
        /// Weight of the KL term.
        beta: f32,
        /// Likelihood of the reconstruction.
        recon: Recon,
    },
}

/// Every size of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoencoderConfig {
    /// Image (channels, height, width); height and width multiples of 4.
    pub image_shape: [usize; 3],
    /// Trunk channels h.
    pub hidden: usize,
    /// Channels inside a residual layer.
    pub res_hidden: usize,
    /// Residual layers per stack.
    pub res_layers: usize,
    /// The bottleneck.
    pub bottleneck: Bottleneck,
    /// AE, DAE or VAE.
    pub kind: AeKind,
}

impl AutoencoderConfig {
    /// The conv trunk: two stride-2 stages, as the VQ-VAE's.
    pub fn trunk(&self) -> TrunkSizes {
        TrunkSizes::reference(self.hidden, self.res_hidden, self.res_layers)
    }

    /// Checks every size and setting.
    pub fn validate(&self) -> Result<()> {
        check_image_shape(self.image_shape, self.image_shape[0], self.trunk().scale())?;
        check_trunk(&self.trunk())?;
        Setting::LatentSize.require_positive(self.latent_size() as u64)?;
        match self.kind {
            AeKind::Denoising(Corruption::Mask(p)) if !(0.0..1.0).contains(&p) => Err(
                Error::setting(Setting::MaskProb, format!("must be in [0, 1), got {p}")),
            ),
            AeKind::Denoising(Corruption::Gaussian(s)) if !(s >= 0.0 && s.is_finite()) => Err(
                Error::setting(Setting::NoiseStd, format!("must be >= 0, got {s}")),
            ),
            AeKind::Variational { beta, .. } if !(beta >= 0.0 && beta.is_finite()) => Err(
                Error::setting(Setting::KlWeight, format!("must be >= 0, got {beta}")),
            ),
            _ => Ok(()),
        }
    }

    fn latent_size(&self) -> usize {
        match self.bottleneck {
            Bottleneck::Spatial { channels } => channels,
            Bottleneck::Flat { dim } => dim,
        }
    }

    /// (height, width) of the encoder's feature maps: the image sides over the trunk's scale.
    fn feature_grid(&self) -> [usize; 2] {
        let [_, h, w] = self.image_shape;
        let scale = self.trunk().scale();
        [h / scale, w / scale]
    }

    /// The short name of the model kind: ae, dae or vae.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            AeKind::Plain => "ae",
            AeKind::Denoising(_) => "dae",
            AeKind::Variational { .. } => "vae",
        }
    }

    /// Whether this is a VAE (the encoder gives means and log-variances).
    pub fn variational(&self) -> bool {
        matches!(self.kind, AeKind::Variational { .. })
    }
}

/// Into and out of the latent.
enum Latent {
    Spatial { to: Conv2d },
    Flat { to: Linear, from: Linear },
}

/// What one forward pass produces; every loss is a [1] tensor averaged over the batch.
pub struct AeOutput {
    /// The reconstruction in model units ([-0.5, 0.5] pixels).
    pub recon: Tensor,
    /// The loss that is minimised.
    pub loss: Tensor,
    /// Mean squared error of the reconstruction against the clean input (model units).
    pub mse: Tensor,
    /// VAE: reconstruction NLL per image in nats (without the constant of a Gaussian).
    pub recon_nll: Option<Tensor>,
    /// VAE: KL divergence per image in nats.
    pub kl: Option<Tensor>,
}

/// AE, denoising AE or VAE on the reference model's encoder and decoder (docs/design.md).
pub struct Autoencoder {
    /// The configuration.
    pub config: AutoencoderConfig,
    /// All parameters.
    pub params: ParamStore,
    encoder: ConvEncoder,
    latent: Latent,
    decoder: ConvDecoder,
}

impl Autoencoder {
    /// Builds the model with parameters drawn from `seed`. Parameters: `encoder.*` and `decoder.*`
    /// as in the VQ-VAE, `to_latent.*` (and `from_latent.*` for a flat bottleneck).
    pub fn new(gpu: &Gpu, config: AutoencoderConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let c = config.image_shape[0];
        let hid = config.hidden;
        let size = config.latent_size();
        // a VAE's encoder gives means and log-variances
        let stats = if config.variational() { 2 * size } else { size };
        let mut ps = ParamStore::new(gpu, seed);
        let encoder = ConvEncoder::new(&mut ps.scope("encoder"), c, config.trunk());
        let (latent, decoder_in) = match config.bottleneck {
            Bottleneck::Spatial { .. } => (
                Latent::Spatial {
                    to: Conv2d::new(
                        &mut ps.scope("to_latent"),
                        hid,
                        stats,
                        (1, 1),
                        Conv2dOptions::default(),
                        true,
                    ),
                },
                size,
            ),
            Bottleneck::Flat { .. } => {
                let [fh, fw] = config.feature_grid();
                let features = hid * fh * fw;
                (
                    Latent::Flat {
                        to: Linear::new(&mut ps.scope("to_latent"), features, stats, true),
                        from: Linear::new(&mut ps.scope("from_latent"), size, features, true),
                    },
                    hid,
                )
            }
        };
        let decoder = ConvDecoder::new(&mut ps.scope("decoder"), decoder_in, config.trunk(), c);
        ps.finalize()?;
        Ok(Self {
            config,
            params: ps,
            encoder,
            latent,
            decoder,
        })
    }

    /// The encoder's output for x [B, C, H, W]: the code (AE, DAE), or the means followed by the
    /// log-variances along dim 1 (VAE). [B, L or 2L, H/4, W/4] spatial, [B, L or 2L] flat.
    pub fn encode(&self, x: &Tensor) -> Tensor {
        let features = self.encoder.forward(x);
        match &self.latent {
            Latent::Spatial { to } => to.forward(&features),
            Latent::Flat { to, .. } => {
                let b = features.dim(0);
                to.forward(&features.reshape(&[b, features.numel() / b]))
            }
        }
    }

    /// The decoder's output for codes z ([B, L, H/4, W/4] or [B, L]): images in model units, or
    /// logits for a Bernoulli VAE.
    pub fn decode_raw(&self, z: &Tensor) -> Tensor {
        match &self.latent {
            Latent::Spatial { .. } => self.decoder.forward(z),
            Latent::Flat { from, .. } => {
                let [h, w] = self.config.feature_grid();
                let b = z.dim(0);
                let t = from.forward(z).reshape(&[b, self.config.hidden, h, w]);
                self.decoder.forward(&t)
            }
        }
    }

    /// Decodes codes into images in model units ([-0.5, 0.5] pixels).
    pub fn decode(&self, z: &Tensor) -> Tensor {
        self.images_from(&self.decode_raw(z))
    }

    /// The decoder's raw output as images in model units: a Bernoulli VAE's logits become
    /// probabilities shifted to [-0.5, 0.5]; every other output already is an image.
    fn images_from(&self, raw: &Tensor) -> Tensor {
        match self.config.kind {
            AeKind::Variational {
                recon: Recon::Bce, ..
            } => elementwise::affine(&raw.sigmoid(), 1.0, -0.5),
            _ => raw.clone(),
        }
    }

    /// The shape of one batch of codes.
    pub fn latent_shape(&self, batch: usize) -> Vec<usize> {
        let [h, w] = self.config.feature_grid();
        match self.config.bottleneck {
            Bottleneck::Spatial { channels } => vec![batch, channels, h, w],
            Bottleneck::Flat { dim } => vec![batch, dim],
        }
    }

    /// Runs the model on x [B, C, H, W] (model units). `seed` keys the GPU noise of this pass
    /// (corruption, reparameterization); `variance` is the data's pixel variance; `train`
    /// turns the denoising corruption on.
    pub fn forward(&self, x: &Tensor, seed: u64, variance: f32, train: bool) -> AeOutput {
        let input = match (self.config.kind, train) {
            (AeKind::Denoising(Corruption::Mask(p)), true) => latent::mask_noise(x, p, -0.5, seed),
            (AeKind::Denoising(Corruption::Gaussian(s)), true) => {
                latent::gaussian_noise(x, s, seed)
            }
            _ => x.clone(),
        };
        let code = self.encode(&input);
        let per_image = (x.numel() / x.dim(0)) as f32;
        match self.config.kind {
            AeKind::Variational { beta, recon } => {
                let eps = latent::normal(x.gpu(), &self.latent_shape(x.dim(0)), seed, 0.0, 1.0);
                let z = latent::reparameterize(&code, &eps);
                let latent_per_image = (z.numel() / z.dim(0)) as f32;
                let raw = self.decode_raw(&z);
                let recon_nll = match recon {
                    Recon::Mse => reduce::mse_loss(&raw, x).scale(per_image / (2.0 * variance)),
                    Recon::Bce => {
                        let target = elementwise::affine(x, 1.0, 0.5);
                        latent::bce_logits(&raw, &target).mean().scale(per_image)
                    }
                };
                let images = self.images_from(&raw);
                let kl = latent::kl(&code).mean().scale(latent_per_image);
                AeOutput {
                    loss: recon_nll.add(&kl.scale(beta)),
                    mse: reduce::mse_loss(&images.detach(), x),
                    recon: images,
                    recon_nll: Some(recon_nll),
                    kl: Some(kl),
                }
            }
            _ => {
                let recon = self.decode_raw(&code);
                let mse = reduce::mse_loss(&recon, x);
                AeOutput {
                    loss: mse.scale(1.0 / variance),
                    mse,
                    recon,
                    recon_nll: None,
                    kl: None,
                }
            }
        }
    }
}

/// Format tag of AE / DAE / VAE checkpoints.
pub(crate) const FORMAT: &str = "vqgpu.autoencoder.1";

impl Autoencoder {
    /// Adds the parameters and every size and setting to a checkpoint.
    pub fn write_state(&self, ck: &mut Checkpoint) -> Result<()> {
        self.params.save_into(ck, FlatBuffer::Values, "")?;
        let c = &self.config;
        ck.set("format", FORMAT);
        ck.set("kind", self.config.kind_name());
        ck.set(
            "image_shape",
            c.image_shape.map(|v| v.to_string()).join(","),
        );
        ck.set("hidden", c.hidden);
        ck.set("res_hidden", c.res_hidden);
        ck.set("res_layers", c.res_layers);
        match c.bottleneck {
            Bottleneck::Spatial { channels } => ck.set("latent_channels", channels),
            Bottleneck::Flat { dim } => ck.set("latent_dim", dim),
        }
        match c.kind {
            AeKind::Plain => {}
            AeKind::Denoising(Corruption::Mask(p)) => ck.set("mask_prob", p),
            AeKind::Denoising(Corruption::Gaussian(s)) => ck.set("noise_std", s),
            AeKind::Variational { beta, recon } => {
                ck.set("beta", beta);
                ck.set("recon", if recon == Recon::Bce { "bce" } else { "mse" });
            }
        }
        Ok(())
    }

    /// The model saved in `ck`.
    pub fn from_checkpoint(gpu: &Gpu, ck: &Checkpoint) -> Result<Self> {
        ck.expect_format(FORMAT, "is not a vqgpu AE / DAE / VAE checkpoint")?;
        let [c, h, w] = ck.dims("image_shape")?;
        let bottleneck = match ck.meta_parse("latent_dim") {
            Ok(dim) => Bottleneck::Flat { dim },
            Err(_) => Bottleneck::Spatial {
                channels: ck.meta_parse("latent_channels")?,
            },
        };
        let kind = match ck.meta("kind")? {
            "dae" => AeKind::Denoising(match ck.meta_parse("mask_prob") {
                Ok(p) => Corruption::Mask(p),
                Err(_) => Corruption::Gaussian(ck.meta_parse("noise_std")?),
            }),
            "vae" => AeKind::Variational {
                beta: ck.meta_parse("beta")?,
                recon: if ck.meta("recon")? == "bce" {
                    Recon::Bce
                } else {
                    Recon::Mse
                },
            },
            _ => AeKind::Plain,
        };
        let config = AutoencoderConfig {
            image_shape: [c, h, w],
            hidden: ck.meta_parse("hidden")?,
            res_hidden: ck.meta_parse("res_hidden")?,
            res_layers: ck.meta_parse("res_layers")?,
            bottleneck,
            kind,
        };
        let model = Self::new(gpu, config, 0)?;
        model.params.load_from(ck, FlatBuffer::Values, "")?;
        Ok(model)
    }
}
