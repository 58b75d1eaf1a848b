//! The VQ-VAE of van den Oord et al. 2017 in the reference configuration of docs/design.md,
//! with the parameter names of the reference PyTorch model's `state_dict`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::models::trunk::{ConvDecoder, ConvEncoder, TrunkSizes};
use crate::models::{check_image_shape, check_trunk};
use crate::nn::{
    CodebookUpdate, Conv2d, EmaConfig, FlatBuffer, ParamStore, Quantized, VectorQuantizer,
};
use crate::ops::conv::Conv2dOptions;
use crate::ops::reduce;
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
    /// The conv trunk: two stride-2 stages, as the reference.
    pub fn trunk(&self) -> TrunkSizes {
        TrunkSizes::reference(self.hidden, self.res_hidden, self.res_layers)
    }

    /// Checks every size and weight.
    pub fn validate(&self) -> Result<()> {
        check_trunk(&self.trunk())?;
        if self.in_channels == 0 {
            return Err(Error::InvalidArgument(
                "a VQ-VAE needs images with at least one channel".into(),
            ));
        }
        VectorQuantizer::validate(self.codebook_size, self.code_dim, self.beta)
    }

    /// Checks that images of `shape` [C, H, W] fit the model: its channels, and sides that are
    /// positive multiples of the trunk's scale.
    pub fn check_images(&self, shape: [usize; 3]) -> Result<()> {
        check_image_shape(shape, self.in_channels, self.trunk().scale())
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
        let (c, h, d) = (config.in_channels, config.hidden, config.code_dim);
        let mut ps = ParamStore::new(gpu, seed);
        let encoder = ConvEncoder::new(&mut ps.scope("encoder"), c, config.trunk());
        let pre_quantization = Conv2d::new(
            &mut ps.scope("pre_quantization"),
            h,
            d,
            (1, 1),
            Conv2dOptions::default(),
            true,
        );
        let quantizer = VectorQuantizer::new(
            &mut ps.scope("vq"),
            config.codebook_size,
            d,
            config.beta,
            config.update,
        );
        let decoder = ConvDecoder::new(&mut ps.scope("decoder"), d, config.trunk(), c);
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
        self.decode(&self.quantizer.codebook.lookup_detached(codes))
    }

    /// Encodes, quantizes (updating an EMA codebook when `train`) and decodes x [B, C, H, W].
    pub fn forward(&mut self, x: &Tensor, train: bool) -> VqVaeOutput {
        let z = self.encode(x);
        let quantized = self.quantizer.forward(&z, train);
        let recon = self.decode(&quantized.z_q);
        VqVaeOutput { recon, quantized }
    }

    /// The training objective of `out` = the forward pass on `x`: (reconstruction MSE / `variance`
    /// + the quantizer's loss, the reconstruction MSE), both [1].
    pub fn objective(x: &Tensor, out: &VqVaeOutput, variance: f32) -> (Tensor, Tensor) {
        let recon_mse = reduce::mse_loss(&out.recon, x);
        let loss = recon_mse.scale(1.0 / variance).add(&out.quantized.loss);
        (loss, recon_mse)
    }
}

/// Format tag of VQ-VAE checkpoints.
pub(crate) const FORMAT: &str = "vqgpu.vqvae.1";

impl VqVae {
    /// Adds the model to a checkpoint: parameters under the reference `state_dict` names, the EMA
    /// statistics (`vq.cluster_size`, `vq.embed_avg`, plus `vq.unused_steps`), and the sizes.
    pub fn write_state(&self, ck: &mut Checkpoint) -> Result<()> {
        self.params.save_into(ck, FlatBuffer::Values, "")?;
        self.quantizer.write_state(ck)?;
        ck.set("format", FORMAT);
        self.config.write_meta(ck);
        ck.set("quantizer_step", self.quantizer.steps());
        Ok(())
    }

    /// The model saved in `ck` (any vqgpu VQ-VAE checkpoint).
    pub fn from_checkpoint(gpu: &Gpu, ck: &Checkpoint) -> Result<Self> {
        if crate::models::vqvae2::VqVae2::is_format_of(ck) {
            return Err(ck.error(
                "is a VQ-VAE-2 checkpoint, and this command takes a one-level VQ-VAE's (`train vqvae2 \
                 --resume`, `eval vqvae`, `reconstruct` and `encode` take VQ-VAE-2 checkpoints; \
                 sampling from one is not supported yet)"
                    .into(),
            ));
        }
        ck.expect_format(
            FORMAT,
            "is not a vqgpu VQ-VAE checkpoint (a checkpoint of another architecture?)",
        )?;
        let mut model = Self::new(gpu, config_from(ck)?, 0)?;
        model.quantizer.set_steps(ck.meta_parse("quantizer_step")?);
        model.params.load_from(ck, FlatBuffer::Values, "")?;
        model.quantizer.read_state(ck)?;
        Ok(model)
    }

    /// Loads the VQ-VAE of a checkpoint file.
    pub fn load(gpu: &Gpu, path: &Path) -> Result<Self> {
        Self::from_checkpoint(gpu, &Checkpoint::load(path)?)
    }
}

impl VqVaeConfig {
    /// Records every size in a checkpoint's metadata (read back by [`config_from`]).
    pub fn write_meta(&self, ck: &mut Checkpoint) {
        ck.set("in_channels", self.in_channels);
        ck.set("hidden", self.hidden);
        ck.set("res_hidden", self.res_hidden);
        ck.set("res_layers", self.res_layers);
        ck.set("codebook_size", self.codebook_size);
        ck.set("code_dim", self.code_dim);
        ck.set("beta", self.beta);
        self.update.write_meta(ck);
    }
}

/// The model configuration recorded in a checkpoint.
pub fn config_from(ck: &Checkpoint) -> Result<VqVaeConfig> {
    Ok(VqVaeConfig {
        in_channels: ck.meta_parse("in_channels")?,
        hidden: ck.meta_parse("hidden")?,
        res_hidden: ck.meta_parse("res_hidden")?,
        res_layers: ck.meta_parse("res_layers")?,
        codebook_size: ck.meta_parse("codebook_size")?,
        code_dim: ck.meta_parse("code_dim")?,
        beta: ck.meta_parse("beta")?,
        update: CodebookUpdate::from_meta(ck)?,
    })
}
