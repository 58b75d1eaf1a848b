//! Conv2d, ConvTranspose2d and Linear, mirroring the PyTorch modules (names, layouts, initialisation).

use crate::nn::{Param, ParamStore};
use crate::ops::conv::{self, Conv2dOptions, ConvTranspose2dOptions, SpatialMask};
use crate::ops::gemm;
use crate::tensor::Tensor;

/// Registers `{name}.weight` of `shape` and, if wanted, `{name}.bias` of `[bias_len]`, both with
/// PyTorch's default initialisation for `fan_in`.
fn weight_and_bias(
    ps: &mut ParamStore,
    name: &str,
    shape: &[usize],
    bias_len: usize,
    fan_in: usize,
    bias: bool,
) -> (Param, Option<Param>) {
    let weight = ps.kaiming_uniform(&format!("{name}.weight"), shape, fan_in);
    let bias = bias.then(|| ps.kaiming_uniform(&format!("{name}.bias"), &[bias_len], fan_in));
    (weight, bias)
}

/// `nn.Conv2d`: weight [out, in, k, k] (OIHW), optional bias [out].
pub struct Conv2d {
    /// The weight.
    pub weight: Param,
    /// The bias, if any.
    pub bias: Option<Param>,
    /// Stride, padding and mask.
    pub options: Conv2dOptions,
}

impl Conv2d {
    /// Registers `{name}.weight` (and `{name}.bias`) with PyTorch's default initialisation.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ps: &mut ParamStore,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        options: Conv2dOptions,
        bias: bool,
    ) -> Self {
        let shape = [out_channels, in_channels, kernel.0, kernel.1];
        let fan_in = in_channels * kernel.0 * kernel.1;
        let (weight, bias) = weight_and_bias(ps, name, &shape, out_channels, fan_in, bias);
        Self {
            weight,
            bias,
            options,
        }
    }

    /// Keeps only the kernel positions `mask` selects (a masked convolution).
    pub fn with_mask(mut self, mask: SpatialMask) -> Self {
        self.options.mask = Some(mask);
        self
    }

    /// Applies the convolution to x [N, in, H, W].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        conv::conv2d(
            x,
            self.weight.tensor(),
            self.bias.as_ref().map(Param::tensor),
            self.options,
        )
    }
}

/// `nn.ConvTranspose2d`: weight [in, out, k, k] (IOHW), optional bias [out].
pub struct ConvTranspose2d {
    /// The weight.
    pub weight: Param,
    /// The bias, if any.
    pub bias: Option<Param>,
    /// Stride, padding and output padding.
    pub options: ConvTranspose2dOptions,
}

impl ConvTranspose2d {
    /// Registers `{name}.weight` (and `{name}.bias`) with PyTorch's default initialisation
    /// (fan-in taken from weight dim 1, as PyTorch does).
    pub fn new(
        ps: &mut ParamStore,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        options: ConvTranspose2dOptions,
        bias: bool,
    ) -> Self {
        let shape = [in_channels, out_channels, kernel.0, kernel.1];
        let fan_in = out_channels * kernel.0 * kernel.1;
        let (weight, bias) = weight_and_bias(ps, name, &shape, out_channels, fan_in, bias);
        Self {
            weight,
            bias,
            options,
        }
    }

    /// Applies the transposed convolution to x [N, in, H, W].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        conv::conv_transpose2d(
            x,
            self.weight.tensor(),
            self.bias.as_ref().map(Param::tensor),
            self.options,
        )
    }
}

/// `nn.Linear`: weight [out, in], optional bias [out].
pub struct Linear {
    /// The weight.
    pub weight: Param,
    /// The bias, if any.
    pub bias: Option<Param>,
}

impl Linear {
    /// Registers `{name}.weight` (and `{name}.bias`) with PyTorch's default initialisation.
    pub fn new(
        ps: &mut ParamStore,
        name: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> Self {
        let shape = [out_features, in_features];
        let (weight, bias) = weight_and_bias(ps, name, &shape, out_features, in_features, bias);
        Self { weight, bias }
    }

    /// Applies `x W^T + b` to x [B, in].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        gemm::linear(
            x,
            self.weight.tensor(),
            self.bias.as_ref().map(Param::tensor),
        )
    }
}
