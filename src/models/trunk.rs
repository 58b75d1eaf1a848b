//! The convolutional encoder and decoder of the reference model (docs/design.md), shared by the VQ-VAE and the
//! AE / VAE / denoising AE. Each takes the scope of its parameters (`encoder`, `decoder` in the
//! reference names) and its number of x2 stages, so a model with two encoders builds two instances.

use crate::nn::{Conv2d, ConvTranspose2d, ResidualStack, Scope};
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
}

impl TrunkSizes {
    /// The reference trunk (docs/design.md): two stride-2 stages, codes at H/4 x W/4.
    pub fn reference(hidden: usize, res_hidden: usize, res_layers: usize) -> Self {
        Self {
            hidden,
            res_hidden,
            res_layers,
            stages: 2,
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
/// `5`, as in the reference's `nn.Sequential`.
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
            &mut scope.scope(2 * n + 1),
            h,
            sizes.res_hidden,
            sizes.res_layers,
        );
        Self { downs, last, stack }
    }

    /// The encoder features [B, h, H / 2^stages, W / 2^stages].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.clone();
        for conv in &self.downs {
            h = conv.forward(&h).relu();
        }
        self.stack.forward(&self.last.forward(&h))
    }
}

/// ConvT(latent, h, 3), the residual stack (+ ReLU), then stride-2 transposed convolutions (k4,
/// h -> h/2, h/2 -> h/2, ..., -> out) with a ReLU between them: z [B, latent, H', W'] ->
/// [B, out, H' 2^stages, W' 2^stages]. With two stages the names are `0`, the stack `1`, `2`, `4`.
pub struct ConvDecoder {
    input: ConvTranspose2d,
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
        let input = ConvTranspose2d::new(
            &mut scope.scope(0),
            latent_channels,
            h,
            (3, 3),
            ConvTranspose2dOptions::new(1, 1, 0),
            true,
        );
        let stack = ResidualStack::new(&mut scope.scope(1), h, sizes.res_hidden, sizes.res_layers);
        let up = ConvTranspose2dOptions::new(2, 1, 0);
        let ups = (0..n)
            .map(|i| {
                let cin = if i == 0 { h } else { h / 2 };
                let cout = if i + 1 == n { out_channels } else { h / 2 };
                ConvTranspose2d::new(&mut scope.scope(2 + 2 * i), cin, cout, (4, 4), up, true)
            })
            .collect();
        Self { input, stack, ups }
    }

    /// The decoded images [B, out, H, W].
    pub fn forward(&self, z: &Tensor) -> Tensor {
        let mut h = self.stack.forward(&self.input.forward(z));
        let last = self.ups.len() - 1;
        for (i, up) in self.ups.iter().enumerate() {
            h = up.forward(&h);
            if i < last {
                h = h.relu();
            }
        }
        h
    }
}
