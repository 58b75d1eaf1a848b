//! Conv2d, ConvTranspose2d and Linear, mirroring the PyTorch modules (names, layouts, initialisation).
//! Each registers `weight` and `bias` in the scope it is given.

use crate::gpu::profile;
use crate::nn::{Param, Scope};
use crate::ops::conv::{self, Conv2dOptions, ConvTranspose2dOptions, Fused, SpatialMask};
use crate::ops::gemm;
use crate::ops::window::{self, Window, WindowWeight};
use crate::tensor::Tensor;

/// Registers `weight` of `shape` and, if wanted, `bias` of `[bias_len]` in `scope`, both with
/// PyTorch's default initialisation for `fan_in`.
fn weight_and_bias(
    scope: &mut Scope,
    shape: &[usize],
    bias_len: usize,
    fan_in: usize,
    bias: bool,
) -> (Param, Option<Param>) {
    let weight = scope.kaiming_uniform("weight", shape, fan_in);
    let bias = bias.then(|| scope.kaiming_uniform("bias", &[bias_len], fan_in));
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
    /// Registers `weight` (and `bias`) in `scope` with PyTorch's default initialisation.
    pub fn new(
        scope: &mut Scope,
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        options: Conv2dOptions,
        bias: bool,
    ) -> Self {
        let shape = [out_channels, in_channels, kernel.0, kernel.1];
        let fan_in = in_channels * kernel.0 * kernel.1;
        let (weight, bias) = weight_and_bias(scope, &shape, out_channels, fan_in, bias);
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
        self.forward_fused(x, Fused::default())
    }

    /// `forward(x).relu()`, the ReLU fused into the convolution's store.
    pub fn forward_relu(&self, x: &Tensor) -> Tensor {
        self.forward_fused(x, Fused::RELU)
    }

    /// `residual.add(&forward(x))`, the sum made in the convolution's store.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Tensor {
        let fused = Fused {
            residual: Some(residual),
            relu: false,
        };
        self.forward_fused(x, fused)
    }

    fn forward_fused(&self, x: &Tensor, fused: Fused) -> Tensor {
        let _layer = profile::layer(self.weight.layer_name());
        let bias = self.bias.as_ref().map(Param::tensor);
        conv::conv2d_fused(x, self.weight.tensor(), bias, self.options, fused)
    }

    /// The same convolution for evaluation at a few output positions at a time (see
    /// [`WindowedConv2d`]), with the current weights.
    pub fn windowed(&self) -> WindowedConv2d {
        WindowedConv2d {
            weight: WindowWeight::new(self.weight.tensor(), self.options),
            bias: self.bias.as_ref().map(|b| b.tensor().clone()),
            layer: self.weight.layer_name().to_string(),
        }
    }
}

/// A [`Conv2d`] (stride 1) evaluated at the output positions of a window only, for running a
/// causal network a few positions at a time. It holds a copy of the weights in the layout of
/// [`window::conv_window`]. No autograd.
pub struct WindowedConv2d {
    weight: WindowWeight,
    bias: Option<Tensor>,
    layer: String,
}

impl WindowedConv2d {
    /// The convolution of x at `window`, where x is a window of (or all of) a map of `full_hw`:
    /// equal to [`Conv2d::forward`] of that map at the window, bit for bit on one adapter.
    pub fn forward(&self, x: &Tensor, window: Window, full_hw: [usize; 2]) -> Tensor {
        let _layer = profile::layer(&self.layer);
        window::conv_window(
            x,
            &self.weight,
            self.bias.as_ref(),
            window,
            [x.dim(0), x.dim(1), full_hw[0], full_hw[1]],
        )
    }

    /// The convolution of x [N, Cin, H, W] (`full_hw` = (H, W)) at position `at` of each of its
    /// N maps, side by side: [1, Cout, 1, N] (see [`window::conv_position`]).
    pub fn forward_position(&self, x: &Tensor, at: Window, full_hw: [usize; 2]) -> Tensor {
        let _layer = profile::layer(&self.layer);
        let full = [x.dim(0), x.dim(1), full_hw[0], full_hw[1]];
        window::conv_position(x, &self.weight, self.bias.as_ref(), at, full)
    }

    /// This pointwise convolution of one position of N maps of `full_hw` side by side, x [1, Cin,
    /// 1, N] (see [`window::read_position`]): [1, Cout, 1, N], equal to [`Conv2d::forward`] of
    /// those maps there bit for bit on one adapter.
    ///
    /// # Panics
    /// If the kernel is not 1x1.
    pub fn forward_side(&self, x: &Tensor, full_hw: [usize; 2]) -> Tensor {
        let [_, _, k_h, k_w] = self.weight.dims();
        assert!(
            k_h == 1 && k_w == 1,
            "forward_side: a {k_h}x{k_w} kernel would mix the maps"
        );
        let _layer = profile::layer(&self.layer);
        let count = x.dim(3);
        window::conv_window(
            x,
            &self.weight,
            self.bias.as_ref(),
            Window::whole(1, count),
            [count, x.dim(1), full_hw[0], full_hw[1]],
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
    /// Registers `weight` (and `bias`) in `scope` with PyTorch's default initialisation (fan-in
    /// taken from weight dim 1, as PyTorch does).
    pub fn new(
        scope: &mut Scope,
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        options: ConvTranspose2dOptions,
        bias: bool,
    ) -> Self {
        let shape = [in_channels, out_channels, kernel.0, kernel.1];
        let fan_in = out_channels * kernel.0 * kernel.1;
        let (weight, bias) = weight_and_bias(scope, &shape, out_channels, fan_in, bias);
        Self {
            weight,
            bias,
            options,
        }
    }

    /// Applies the transposed convolution to x [N, in, H, W].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_fused(x, Fused::default())
    }

    /// `forward(x).relu()`, the ReLU fused into the convolution's store.
    pub fn forward_relu(&self, x: &Tensor) -> Tensor {
        self.forward_fused(x, Fused::RELU)
    }

    fn forward_fused(&self, x: &Tensor, fused: Fused) -> Tensor {
        let _layer = profile::layer(self.weight.layer_name());
        let bias = self.bias.as_ref().map(Param::tensor);
        conv::conv_transpose2d_fused(x, self.weight.tensor(), bias, self.options, fused)
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
    /// Registers `weight` (and `bias`) in `scope` with PyTorch's default initialisation.
    pub fn new(scope: &mut Scope, in_features: usize, out_features: usize, bias: bool) -> Self {
        let shape = [out_features, in_features];
        let (weight, bias) = weight_and_bias(scope, &shape, out_features, in_features, bias);
        Self { weight, bias }
    }

    /// Applies `x W^T + b` to x [B, in].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let _layer = profile::layer(self.weight.layer_name());
        gemm::linear(
            x,
            self.weight.tensor(),
            self.bias.as_ref().map(Param::tensor),
        )
    }
}
