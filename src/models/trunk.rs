//! The convolutional encoder and decoder of the reference model (docs/design.md), shared by the
//! VQ-VAE, the AE / VAE / denoising AE and the two levels of VQ-VAE-2. Each takes the scope of its
//! parameters (`encoder`, `decoder` in the reference names), its number of x2 stages and its
//! style, so a model with two encoders builds two instances.

use crate::nn::{Conv2d, ConvTranspose2d, ResidualLayout, ResidualStack, Scope};
use crate::ops::conv::{Conv2dOptions, ConvTranspose2dOptions};
use crate::tensor::Tensor;

/// The sizes of a trunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrunkSizes {
    /// Channels h.
    pub hidden: usize,
    /// Channels inside a residual layer.
    pub res_hidden: usize,
    /// Residual layers in the stack.
    pub res_layers: usize,
    /// Stride-2 stages: the encoder divides the sides by `2^stages`, the decoder multiplies them.
    pub stages: usize,
    /// How the layers are laid out and named.
    pub style: TrunkStyle,
}

/// The two layouts of the same trunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrunkStyle {
    /// The one-level reference model (docs/design.md): the residual stack is one module with
    /// convolutions without bias, and the decoder opens with a 3x3 transposed convolution.
    Reference,
    /// VQ-VAE-2 as its best-known PyTorch implementation lays it out: every residual layer is an
    /// item of the sequence (`blocks.{n}`) with biased convolutions, and the decoder opens with a
    /// 3x3 convolution.
    Vqvae2,
}

impl TrunkSizes {
    /// The reference trunk (docs/design.md): two stride-2 stages, codes at H/4 x W/4.
    pub fn reference(hidden: usize, res_hidden: usize, res_layers: usize) -> Self {
        Self {
            hidden,
            res_hidden,
            res_layers,
            stages: 2,
            style: TrunkStyle::Reference,
        }
    }

    /// The residual layout of this style.
    fn residual_layout(&self) -> ResidualLayout {
        match self.style {
            TrunkStyle::Reference => ResidualLayout::Module,
            TrunkStyle::Vqvae2 => ResidualLayout::Sequence,
        }
    }

    /// The factor by which the encoder shrinks each side.
    pub fn scale(&self) -> usize {
        1 << self.stages
    }
}

/// Stride-2 convolutions (k4, in -> h/2, then h/2 -> h, then h -> h), each followed by a ReLU, a
/// k3 convolution to h, and the residual stack (with its final ReLU): x [B, in, H, W] ->
/// [B, h, H / 2^stages, W / 2^stages]. With two stages the names are `0`, `2`, `4` and the stack
/// `5`, as in the reference's `nn.Sequential`; in VQ-VAE-2 style the residual layers are `5`,
/// `6`, ...
pub struct ConvEncoder {
    downs: Vec<Conv2d>,
    last: Conv2d,
    stack: ResidualStack,
}

impl ConvEncoder {
    /// Registers the layers in `scope`; `sizes.stages` must be at least 1.
    pub fn new(scope: &mut Scope, in_channels: usize, sizes: TrunkSizes) -> Self {
        let (h, n) = (sizes.hidden, sizes.stages);
        let down = Conv2dOptions::new(2, 1);
        let width = |i: usize| match i {
            0 => in_channels,
            1 => h / 2,
            _ => h,
        };
        let downs = (0..n)
            .map(|i| {
                let out = if i == 0 { h / 2 } else { h };
                Conv2d::new(&mut scope.scope(2 * i), width(i), out, (4, 4), down, true)
            })
            .collect();
        let last = Conv2d::new(
            &mut scope.scope(2 * n),
            width(n),
            h,
            (3, 3),
            Conv2dOptions::new(1, 1),
            true,
        );
        let stack = ResidualStack::new(
            scope,
            2 * n + 1,
            h,
            sizes.res_hidden,
            sizes.res_layers,
            sizes.residual_layout(),
        );
        Self { downs, last, stack }
    }

    /// The encoder features [B, h, H / 2^stages, W / 2^stages].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.clone();
        for conv in &self.downs {
            h = conv.forward_relu(&h);
        }
        self.stack.forward(&self.last.forward(&h))
    }
}

/// The decoder's first layer: a 3x3 transposed convolution (reference style) or convolution
/// (VQ-VAE-2 style), latent -> h.
enum DecoderInput {
    Transposed(ConvTranspose2d),
    Conv(Conv2d),
}

/// ConvT(latent, h, 3) (or Conv(latent, h, 3) in VQ-VAE-2 style), the residual stack (+ ReLU),
/// then stride-2 transposed convolutions (k4, h -> h/2, h/2 -> h/2, ..., -> out) with a ReLU
/// between them: z [B, latent, H', W'] -> [B, out, H' 2^stages, W' 2^stages]. With two stages the
/// names are `0`, the stack `1`, `2`, `4`; in VQ-VAE-2 style the residual layers are `1` to `n`
/// and the transposed convolutions `n + 2`, `n + 4`.
pub struct ConvDecoder {
    input: DecoderInput,
    stack: ResidualStack,
    ups: Vec<ConvTranspose2d>,
}

impl ConvDecoder {
    /// Registers the layers in `scope`; `sizes.stages` must be at least 1.
    pub fn new(
        scope: &mut Scope,
        latent_channels: usize,
        sizes: TrunkSizes,
        out_channels: usize,
    ) -> Self {
        let (h, n) = (sizes.hidden, sizes.stages);
        let input = match sizes.style {
            TrunkStyle::Reference => DecoderInput::Transposed(ConvTranspose2d::new(
                &mut scope.scope(0),
                latent_channels,
                h,
                (3, 3),
                ConvTranspose2dOptions::new(1, 1, 0),
                true,
            )),
            TrunkStyle::Vqvae2 => DecoderInput::Conv(Conv2d::new(
                &mut scope.scope(0),
                latent_channels,
                h,
                (3, 3),
                Conv2dOptions::new(1, 1),
                true,
            )),
        };
        let layout = sizes.residual_layout();
        let stack = ResidualStack::new(scope, 1, h, sizes.res_hidden, sizes.res_layers, layout);
        // the sequence index after the stack (and, in VQ-VAE-2 style, its ReLU)
        let after = match sizes.style {
            TrunkStyle::Reference => 2,
            TrunkStyle::Vqvae2 => sizes.res_layers + 2,
        };
        let up = ConvTranspose2dOptions::new(2, 1, 0);
        let ups = (0..n)
            .map(|i| {
                let cin = if i == 0 { h } else { h / 2 };
                let cout = if i + 1 == n { out_channels } else { h / 2 };
                let mut scope = scope.scope(after + 2 * i);
                ConvTranspose2d::new(&mut scope, cin, cout, (4, 4), up, true)
            })
            .collect();
        Self { input, stack, ups }
    }

    /// The decoded images [B, out, H, W].
    pub fn forward(&self, z: &Tensor) -> Tensor {
        let h = match &self.input {
            DecoderInput::Transposed(conv) => conv.forward(z),
            DecoderInput::Conv(conv) => conv.forward(z),
        };
        let mut h = self.stack.forward(&h);
        let last = self.ups.len() - 1;
        for (i, up) in self.ups.iter().enumerate() {
            h = match i < last {
                true => up.forward_relu(&h),
                false => up.forward(&h),
            };
        }
        h
    }
}
