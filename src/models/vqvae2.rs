//! VQ-VAE-2 (Razavi et al. 2019): two levels of codes. The bottom encoder brings the image to
//! H/4, the top encoder from there to H/8; the top codes are decoded back to H/4 and joined with
//! the bottom features before the bottom quantizer; the decoder reconstructs from both code maps
//! (the top one brought to H/4 by a transposed convolution). Parameter names and layouts are those
//! of the best-known PyTorch implementation's `VQVAE` (rosinality/vq-vae-2-pytorch), whose
//! quantizers keep the codebook as `embed` [D, K] with `cluster_size` [K] and `embed_avg` [D, K].
//!
//! Its sizes are a [`VqVaeConfig`]'s, each level with a codebook of its own of those sizes; the
//! defaults are the PyTorch implementation's (128 channels, 2 residual layers of 32, D = 64,
//! K = 512 per level, EMA decay 0.99, commitment 0.25), plus vqgpu's dead-code restarts.

use std::path::Path;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::models::check_image_shape;
use crate::models::trunk::{ConvDecoder, ConvEncoder, TrunkSizes, TrunkStyle};
use crate::models::vqvae::{config_from, VqVaeConfig};
use crate::nn::{Conv2d, ConvTranspose2d, FlatBuffer, ParamStore, Quantized, VectorQuantizer};
use crate::ops::conv::{Conv2dOptions, ConvTranspose2dOptions};
use crate::ops::elementwise::concat_channels;
use crate::ops::reduce;
use crate::tensor::Tensor;

/// The factor by which the top codes are smaller than the image on each side.
pub const SCALE: usize = 8;

/// A trunk of the model with `stages` stride-2 stages.
fn trunk(config: &VqVaeConfig, stages: usize) -> TrunkSizes {
    TrunkSizes {
        stages,
        style: TrunkStyle::Vqvae2,
        ..config.trunk()
    }
}

/// Checks that images of `shape` [C, H, W] fit a VQ-VAE-2 of `config`: its channels, and sides
/// that are positive multiples of 8.
pub fn check_images(config: &VqVaeConfig, shape: [usize; 3]) -> Result<()> {
    check_image_shape(shape, config.in_channels, SCALE)
}

/// What one forward pass produces.
pub struct VqVae2Output {
    /// The reconstruction, [B, C, H, W].
    pub recon: Tensor,
    /// The top quantizer's outputs (codes [B, H/8, W/8]).
    pub top: Quantized,
    /// The bottom quantizer's outputs (codes [B, H/4, W/4]).
    pub bottom: Quantized,
}

/// The two-level model.
pub struct VqVae2 {
    /// The sizes.
    pub config: VqVaeConfig,
    /// All parameters.
    pub params: ParamStore,
    /// The top quantizer (`quantize_t`).
    pub top: VectorQuantizer,
    /// The bottom quantizer (`quantize_b`).
    pub bottom: VectorQuantizer,
    encoder_bottom: ConvEncoder,
    encoder_top: ConvEncoder,
    pre_quantization_top: Conv2d,
    decoder_top: ConvDecoder,
    pre_quantization_bottom: Conv2d,
    upsample_top: ConvTranspose2d,
    decoder: ConvDecoder,
}

impl VqVae2 {
    /// Builds the model with parameters drawn from `seed`, registered in the order of the PyTorch
    /// implementation's modules.
    pub fn new(gpu: &Gpu, config: VqVaeConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let (c, h, d) = (config.in_channels, config.hidden, config.code_dim);
        let (k, beta, update) = (config.codebook_size, config.beta, config.update);
        let mut ps = ParamStore::new(gpu, seed);
        let pointwise = Conv2dOptions::default();
        let encoder_bottom = ConvEncoder::new(&mut ps.scope("enc_b.blocks"), c, trunk(&config, 2));
        let encoder_top = ConvEncoder::new(&mut ps.scope("enc_t.blocks"), h, trunk(&config, 1));
        let pre_quantization_top = Conv2d::new(
            &mut ps.scope("quantize_conv_t"),
            h,
            d,
            (1, 1),
            pointwise,
            true,
        );
        let top = VectorQuantizer::new(&mut ps.scope("quantize_t"), k, d, beta, update);
        let decoder_top = ConvDecoder::new(&mut ps.scope("dec_t.blocks"), d, trunk(&config, 1), d);
        let pre_quantization_bottom = Conv2d::new(
            &mut ps.scope("quantize_conv_b"),
            d + h,
            d,
            (1, 1),
            pointwise,
            true,
        );
        let bottom = VectorQuantizer::new(&mut ps.scope("quantize_b"), k, d, beta, update);
        let upsample_top = ConvTranspose2d::new(
            &mut ps.scope("upsample_t"),
            d,
            d,
            (4, 4),
            ConvTranspose2dOptions::new(2, 1, 0),
            true,
        );
        let decoder = ConvDecoder::new(&mut ps.scope("dec.blocks"), 2 * d, trunk(&config, 2), c);
        ps.finalize()?;
        let mut model = Self {
            config,
            params: ps,
            top,
            bottom,
            encoder_bottom,
            encoder_top,
            pre_quantization_top,
            decoder_top,
            pre_quantization_bottom,
            upsample_top,
            decoder,
        };
        model.top.init_state();
        model.bottom.init_state();
        Ok(model)
    }

    /// Encodes and quantizes (updating EMA codebooks when `train`) x [B, C, H, W], then decodes.
    pub fn forward(&mut self, x: &Tensor, train: bool) -> VqVae2Output {
        let features_bottom = self.encoder_bottom.forward(x);
        let features_top = self.encoder_top.forward(&features_bottom);
        let top = self
            .top
            .forward(&self.pre_quantization_top.forward(&features_top), train);
        let decoded_top = self.decoder_top.forward(&top.z_q);
        let z_bottom = self
            .pre_quantization_bottom
            .forward(&concat_channels(&decoded_top, &features_bottom));
        let bottom = self.bottom.forward(&z_bottom, train);
        let recon = self.decode(&top.z_q, &bottom.z_q);
        VqVae2Output { recon, top, bottom }
    }

    /// The decoder applied to the code vectors of both levels: top [B, D, H/8, W/8] and bottom
    /// [B, D, H/4, W/4].
    pub fn decode(&self, top: &Tensor, bottom: &Tensor) -> Tensor {
        let upsampled = self.upsample_top.forward(top);
        self.decoder.forward(&concat_channels(&upsampled, bottom))
    }

    /// Decodes code grids of both levels, top [B, H/8, W/8] and bottom [B, H/4, W/4], into images.
    pub fn decode_codes(&self, top: &Tensor, bottom: &Tensor) -> Tensor {
        self.decode(
            &self.top.codebook.lookup_detached(top),
            &self.bottom.codebook.lookup_detached(bottom),
        )
    }

    /// The training objective of `out` = the forward pass on `x`: (reconstruction MSE /
    /// `variance` + both quantizers' losses, the reconstruction MSE), both [1].
    pub fn objective(x: &Tensor, out: &VqVae2Output, variance: f32) -> (Tensor, Tensor) {
        let recon_mse = reduce::mse_loss(&out.recon, x);
        let loss = recon_mse
            .scale(1.0 / variance)
            .add(&out.top.loss)
            .add(&out.bottom.loss);
        (loss, recon_mse)
    }

    /// The quantizers with the scope names of their checkpoint tensors.
    fn quantizers(&self) -> [(&VectorQuantizer, &'static str); 2] {
        [(&self.top, "quantize_t"), (&self.bottom, "quantize_b")]
    }
}

/// Format tag of VQ-VAE-2 checkpoints.
pub(crate) const FORMAT: &str = "vqgpu.vqvae2.1";

/// `values` [rows, cols] transposed to [cols, rows].
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| values[r * cols + c]))
        .collect()
}

/// Moves tensor `from` [rows, cols] of `ck` to `to`, transposed to [cols, rows] (an error naming
/// the checkpoint if it is missing or of another shape).
fn move_transposed(
    ck: &mut Checkpoint,
    from: &str,
    to: &str,
    rows: usize,
    cols: usize,
) -> Result<()> {
    let values = transpose(ck.get(from, &[rows, cols])?, rows, cols);
    ck.tensors.remove(from);
    ck.insert(to, &[cols, rows], values);
    Ok(())
}

impl VqVae2 {
    /// Adds the model to a checkpoint under the PyTorch implementation's names: the parameters,
    /// and per level `embed` [D, K], `cluster_size` [K] and `embed_avg` [D, K] (plus vqgpu's
    /// `unused_steps` [K]); and the sizes.
    pub fn write_state(&self, ck: &mut Checkpoint) -> Result<()> {
        self.params.save_into(ck, FlatBuffer::Values, "")?;
        let (k, d) = (self.config.codebook_size, self.config.code_dim);
        for (q, name) in self.quantizers() {
            q.write_state(ck)?;
            move_transposed(
                ck,
                &format!("{name}.embedding.weight"),
                &format!("{name}.embed"),
                k,
                d,
            )?;
            if q.ema_state().is_some() {
                let avg = format!("{name}.embed_avg");
                move_transposed(ck, &avg, &avg, k, d)?;
            }
            ck.set(&format!("{name}.step"), q.steps());
        }
        ck.set("format", FORMAT);
        self.config.write_meta(ck);
        Ok(())
    }

    /// Whether `ck` is a VQ-VAE-2 checkpoint.
    pub fn is_format_of(ck: &Checkpoint) -> bool {
        ck.meta("format").is_ok_and(|f| f == FORMAT)
    }

    /// The model saved in `ck` (any vqgpu VQ-VAE-2 checkpoint).
    pub fn from_checkpoint(gpu: &Gpu, ck: &Checkpoint) -> Result<Self> {
        ck.expect_format(
            FORMAT,
            "is not a vqgpu VQ-VAE-2 checkpoint (a checkpoint of another architecture?)",
        )?;
        let mut model = Self::new(gpu, config_from(ck)?, 0)?;
        let (k, d) = (model.config.codebook_size, model.config.code_dim);
        // the codebooks back in vqgpu's [K, D] layout
        let mut inner = ck.clone();
        for (q, name) in model.quantizers() {
            move_transposed(
                &mut inner,
                &format!("{name}.embed"),
                &format!("{name}.embedding.weight"),
                d,
                k,
            )?;
            if q.ema_state().is_some() {
                let avg = format!("{name}.embed_avg");
                move_transposed(&mut inner, &avg, &avg, d, k)?;
            }
        }
        model.params.load_from(&inner, FlatBuffer::Values, "")?;
        for (q, _) in model.quantizers() {
            q.read_state(&inner)?;
        }
        model.top.set_steps(ck.meta_parse("quantize_t.step")?);
        model.bottom.set_steps(ck.meta_parse("quantize_b.step")?);
        Ok(model)
    }

    /// Loads the VQ-VAE-2 of a checkpoint file.
    pub fn load(gpu: &Gpu, path: &Path) -> Result<Self> {
        Self::from_checkpoint(gpu, &Checkpoint::load(path)?)
    }
}
