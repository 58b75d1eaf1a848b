//! The convolutional encoder and decoder of DESIGN.md section 6, shared by the VQ-VAE and the
//! AE / VAE / denoising AE, with the reference `state_dict` names (`encoder.*`, `decoder.*`).

use crate::nn::{Conv2d, ConvTranspose2d, ParamStore, ResidualStack};
use crate::ops::conv::{Conv2dOptions, ConvTranspose2dOptions};
use crate::tensor::Tensor;

/// Conv(in, h/2, 4, s2), ReLU, Conv(h/2, h, 4, s2), ReLU, Conv(h, h, 3), residual stack (+ ReLU):
/// x [B, in, H, W] -> [B, h, H/4, W/4].
pub struct ConvEncoder {
    convs: [Conv2d; 3],
    stack: ResidualStack,
}

impl ConvEncoder {
    /// Registers `encoder.{0,2,4}` and the stack `encoder.5`.
    pub fn new(
        ps: &mut ParamStore,
        in_channels: usize,
        hidden: usize,
        res_hidden: usize,
        res_layers: usize,
    ) -> Self {
        let (c, h) = (in_channels, hidden);
        let down = Conv2dOptions::new(2, 1);
        let convs = [
            Conv2d::new(ps, "encoder.0", c, h / 2, (4, 4), down, true),
            Conv2d::new(ps, "encoder.2", h / 2, h, (4, 4), down, true),
            Conv2d::new(
                ps,
                "encoder.4",
                h,
                h,
                (3, 3),
                Conv2dOptions::new(1, 1),
                true,
            ),
        ];
        let stack = ResidualStack::new(ps, "encoder.5", h, res_hidden, res_layers);
        Self { convs, stack }
    }

    /// The encoder features [B, h, H/4, W/4].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.convs[0].forward(x).relu();
        let h = self.convs[1].forward(&h).relu();
        self.stack.forward(&self.convs[2].forward(&h))
    }
}

/// ConvT(latent, h, 3), residual stack (+ ReLU), ConvT(h, h/2, 4, s2), ReLU, ConvT(h/2, out, 4, s2):
/// z [B, latent, H/4, W/4] -> [B, out, H, W].
pub struct ConvDecoder {
    input: ConvTranspose2d,
    stack: ResidualStack,
    up: [ConvTranspose2d; 2],
}

impl ConvDecoder {
    /// Registers `decoder.0`, the stack `decoder.1`, and `decoder.{2,4}`.
    pub fn new(
        ps: &mut ParamStore,
        latent_channels: usize,
        hidden: usize,
        res_hidden: usize,
        res_layers: usize,
        out_channels: usize,
    ) -> Self {
        let h = hidden;
        let input = ConvTranspose2d::new(
            ps,
            "decoder.0",
            latent_channels,
            h,
            (3, 3),
            ConvTranspose2dOptions::new(1, 1, 0),
            true,
        );
        let stack = ResidualStack::new(ps, "decoder.1", h, res_hidden, res_layers);
        let up = ConvTranspose2dOptions::new(2, 1, 0);
        let up = [
            ConvTranspose2d::new(ps, "decoder.2", h, h / 2, (4, 4), up, true),
            ConvTranspose2d::new(ps, "decoder.4", h / 2, out_channels, (4, 4), up, true),
        ];
        Self { input, stack, up }
    }

    /// The decoded images [B, out, H, W].
    pub fn forward(&self, z: &Tensor) -> Tensor {
        let h = self.stack.forward(&self.input.forward(z));
        let h = self.up[0].forward(&h).relu();
        self.up[1].forward(&h)
    }
}
