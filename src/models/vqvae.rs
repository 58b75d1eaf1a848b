//! The VQ-VAE of van den Oord et al. 2017 in the reference configuration of DESIGN.md section 6,
//! with the parameter names of the reference PyTorch model's `state_dict`.

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::quantizer::{CodebookUpdate, Quantized, VectorQuantizer};
use crate::models::trunk::{ConvDecoder, ConvEncoder};
use crate::nn::{Conv2d, FlatBuffer, ParamStore};
use crate::ops::conv::Conv2dOptions;
use crate::ops::ema::EmaConfig;
use crate::ops::vq;
use crate::tensor::Tensor;

/// Every size of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct VqVaeConfig {
    /// Image channels (1 grey, 3 RGB).
    pub in_channels: usize,
    /// Channels of the encoder / decoder trunk (h).
    pub hidden: usize,
    /// Channels inside a residual layer.
    pub res_hidden: usize,
    /// Residual layers per stack.
    pub res_layers: usize,
    /// Codebook size K.
    pub codebook_size: usize,
    /// Code dimension D.
    pub code_dim: usize,
    /// Commitment weight.
    pub beta: f32,
    /// EMA (default) or codebook loss.
    pub update: CodebookUpdate,
}

impl Default for VqVaeConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            hidden: 128,
            res_hidden: 32,
            res_layers: 2,
            codebook_size: 512,
            code_dim: 64,
            beta: 0.25,
            update: CodebookUpdate::Ema {
                config: EmaConfig::default(),
                restart_after: Some(20),
            },
        }
    }
}

impl VqVaeConfig {
    /// Checks sizes a user can get wrong, with a message that names the flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.hidden < 2 || !self.hidden.is_multiple_of(2) {
            return bad(format!(
                "--hidden must be an even number >= 2, got {}",
                self.hidden
            ));
        }
        if self.res_hidden == 0 || self.in_channels == 0 {
            return bad("--res-hidden and the image channels must be positive".into());
        }
        if !(1..=vq::MAX_CODES).contains(&self.codebook_size) {
            return bad(format!(
                "--codebook-size must be in 1..={}, got {}",
                vq::MAX_CODES,
                self.codebook_size
            ));
        }
        if !(1..=vq::MAX_CODE_DIM).contains(&self.code_dim) {
            return bad(format!(
                "--code-dim must be in 1..={}, got {}",
                vq::MAX_CODE_DIM,
                self.code_dim
            ));
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return bad(format!(
                "--beta must be a non-negative number, got {}",
                self.beta
            ));
        }
        Ok(())
    }
}

/// What one forward pass produces.
pub struct VqVaeOutput {
    /// The reconstruction, [B, C, H, W].
    pub recon: Tensor,
    /// The quantizer's outputs (VQ loss, codes, usage statistics).
    pub quantized: Quantized,
}

/// Encoder -> pre-quantization conv -> vector quantizer -> decoder.
pub struct VqVae {
    /// The configuration.
    pub config: VqVaeConfig,
    /// All parameters.
    pub params: ParamStore,
    /// The quantizer (its codebook is in `params`).
    pub quantizer: VectorQuantizer,
    encoder: ConvEncoder,
    pre_quantization: Conv2d,
    decoder: ConvDecoder,
}

impl VqVae {
    /// Builds the model with parameters drawn from `seed`.
    pub fn new(gpu: &Gpu, config: VqVaeConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let (c, h, rh, n) = (
            config.in_channels,
            config.hidden,
            config.res_hidden,
            config.res_layers,
        );
        let mut ps = ParamStore::new(gpu, seed);
        let encoder = ConvEncoder::new(&mut ps, c, h, rh, n);
        let pre_quantization = Conv2d::new(
            &mut ps,
            "pre_quantization",
            h,
            config.code_dim,
            (1, 1),
            Conv2dOptions::default(),
            true,
        );
        let quantizer = VectorQuantizer::new(
            &mut ps,
            "vq",
            config.codebook_size,
            config.code_dim,
            config.beta,
            config.update,
        );
        let decoder = ConvDecoder::new(&mut ps, config.code_dim, h, rh, n, c);
        ps.finalize()?;
        let mut model = Self {
            config,
            params: ps,
            quantizer,
            encoder,
            pre_quantization,
            decoder,
        };
        model.quantizer.init_state();
        Ok(model)
    }

    /// The encoder output before quantization, z [B, D, H/4, W/4].
    pub fn encode(&self, x: &Tensor) -> Tensor {
        self.pre_quantization.forward(&self.encoder.forward(x))
    }

    /// The decoder applied to code vectors z_q [B, D, H/4, W/4].
    pub fn decode(&self, z_q: &Tensor) -> Tensor {
        self.decoder.forward(z_q)
    }

    /// Decodes a grid of codes [B, H, W] into images.
    pub fn decode_codes(&self, codes: &Tensor) -> Tensor {
        self.decode(&vq::gather_codes(
            codes,
            &self.quantizer.codebook.tensor().detach(),
        ))
    }

    /// Encodes, quantizes (updating an EMA codebook when `train`) and decodes x [B, C, H, W].
    pub fn forward(&mut self, x: &Tensor, train: bool) -> VqVaeOutput {
        let z = self.encode(x);
        let quantized = self.quantizer.forward(&z, train);
        let recon = self.decode(&quantized.z_q);
        VqVaeOutput { recon, quantized }
    }
}

/// Format tag of VQ-VAE checkpoints.
const FORMAT: &str = "vqgpu.vqvae.1";

impl VqVae {
    /// Adds the model to a checkpoint: parameters under the reference `state_dict` names, the EMA
    /// statistics (`vq.cluster_size`, `vq.embed_avg`, plus `vq.unused_steps`), and the sizes.
    pub fn write_state(&self, ck: &mut Checkpoint) -> Result<()> {
        self.params.save_into(ck, FlatBuffer::Values, "")?;
        if let Some(state) = self.quantizer.ema_state() {
            for (name, t) in [
                ("vq.cluster_size", &state.cluster_size),
                ("vq.embed_avg", &state.embed_avg),
                ("vq.unused_steps", &state.unused_steps),
            ] {
                ck.insert(name, t.shape(), t.to_vec()?);
            }
        }
        let c = &self.config;
        ck.set("format", FORMAT);
        ck.set("in_channels", c.in_channels);
        ck.set("hidden", c.hidden);
        ck.set("res_hidden", c.res_hidden);
        ck.set("res_layers", c.res_layers);
        ck.set("codebook_size", c.codebook_size);
        ck.set("code_dim", c.code_dim);
        ck.set("beta", c.beta);
        match c.update {
            CodebookUpdate::Ema {
                config,
                restart_after,
            } => {
                ck.set("quantizer", "ema");
                ck.set("ema_decay", config.decay);
                ck.set("ema_eps", config.eps);
                ck.set("restart_after", restart_after.unwrap_or(0));
            }
            CodebookUpdate::Loss => ck.set("quantizer", "loss"),
        }
        ck.set("quantizer_step", self.quantizer.steps());
        Ok(())
    }

    /// The model saved in `ck` (any vqgpu VQ-VAE checkpoint).
    pub fn from_checkpoint(gpu: &Gpu, ck: &Checkpoint) -> Result<Self> {
        ck.expect_format(
            FORMAT,
            "is not a vqgpu VQ-VAE checkpoint (a checkpoint of another architecture?)",
        )?;
        let mut model = Self::new(gpu, config_from(ck)?, 0)?;
        model.quantizer.set_steps(ck.meta_parse("quantizer_step")?);
        model.params.load_from(ck, FlatBuffer::Values, "")?;
        if let Some(state) = model.quantizer.ema_state() {
            for (name, tensor) in [
                ("vq.cluster_size", &state.cluster_size),
                ("vq.embed_avg", &state.embed_avg),
                ("vq.unused_steps", &state.unused_steps),
            ] {
                tensor.write(ck.get(name, tensor.shape())?)?;
            }
        }
        Ok(model)
    }
}

/// The model configuration recorded in a checkpoint.
pub fn config_from(ck: &Checkpoint) -> Result<VqVaeConfig> {
    let update = match ck.meta("quantizer")? {
        "ema" => CodebookUpdate::Ema {
            config: EmaConfig {
                decay: ck.meta_parse("ema_decay")?,
                eps: ck.meta_parse("ema_eps")?,
            },
            restart_after: Some(ck.meta_parse::<u32>("restart_after")?).filter(|&n| n > 0),
        },
        _ => CodebookUpdate::Loss,
    };
    Ok(VqVaeConfig {
        in_channels: ck.meta_parse("in_channels")?,
        hidden: ck.meta_parse("hidden")?,
        res_hidden: ck.meta_parse("res_hidden")?,
        res_layers: ck.meta_parse("res_layers")?,
        codebook_size: ck.meta_parse("codebook_size")?,
        code_dim: ck.meta_parse("code_dim")?,
        beta: ck.meta_parse("beta")?,
        update,
    })
}
