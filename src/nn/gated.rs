//! The gated residual layer of Gated PixelCNN (van den Oord et al. 2016): a vertical stack that
//! sees the rows above, a horizontal stack that sees the pixels to the left in the current row,
//! both through masked convolutions, and the gate `tanh(a) * sigmoid(b)`.

use crate::nn::{Conv2d, Param, Scope};
use crate::ops::conv::{Conv2dOptions, SpatialMask};
use crate::ops::{elementwise, gather};
use crate::tensor::Tensor;

/// Whether a masked convolution may see the current position (type B) or not (type A, first layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskType {
    /// Excludes the current position: the first layer, whose input is the code grid itself.
    A,
    /// Includes the current position: every later layer, whose inputs are already causal.
    B,
}

/// The vertical stack's `k x k` mask: the rows above the centre (type A), or also the centre row (B).
/// Its output at row r then depends only on the input rows before r, in every layer.
pub fn vertical_mask(kernel: usize, mask: MaskType) -> SpatialMask {
    let centre = kernel / 2;
    SpatialMask::from_fn(kernel, kernel, |ky, _| match mask {
        MaskType::A => ky < centre,
        MaskType::B => ky <= centre,
    })
}

/// The horizontal stack's `1 x k` mask: the positions left of the centre (type A), or also the
/// centre (type B).
pub fn horizontal_mask(kernel: usize, mask: MaskType) -> SpatialMask {
    let centre = kernel / 2;
    SpatialMask::from_fn(1, kernel, |_, kx| match mask {
        MaskType::A => kx < centre,
        MaskType::B => kx <= centre,
    })
}

/// The (vertical, horizontal) feature maps that flow from one gated layer to the next.
pub struct Stacks {
    /// Vertical stack [B, C, H, W]: at row r a function of the code rows above r only.
    pub vertical: Tensor,
    /// Horizontal stack [B, C, H, W]: at (r, c) a function of the codes before (r, c) in raster order.
    pub horizontal: Tensor,
}

/// One gated residual layer with parameters `vertical`, `horizontal`, `vertical_to_horizontal`,
/// `horizontal_out` and, when conditional, `class_bias` [classes, 2C] in its scope.
pub struct GatedResidualBlock {
    mask: MaskType,
    vertical: Conv2d,
    horizontal: Conv2d,
    vertical_to_horizontal: Conv2d,
    horizontal_out: Conv2d,
    class_bias: Option<Param>,
}

impl GatedResidualBlock {
    /// A layer on `channels` channels with `kernel x kernel` vertical and `1 x kernel` horizontal
    /// masked convolutions (`kernel` odd), and a learned per-class bias when `classes > 0`.
    pub fn new(
        scope: &mut Scope,
        channels: usize,
        kernel: usize,
        mask: MaskType,
        classes: usize,
    ) -> Self {
        let (c, half) = (channels, kernel / 2);
        let vertical = Conv2d::new(
            &mut scope.scope("vertical"),
            c,
            2 * c,
            (kernel, kernel),
            Conv2dOptions::new(1, half),
            true,
        )
        .with_mask(vertical_mask(kernel, mask));
        let horizontal = Conv2d::new(
            &mut scope.scope("horizontal"),
            c,
            2 * c,
            (1, kernel),
            Conv2dOptions {
                padding: (0, half),
                ..Conv2dOptions::default()
            },
            true,
        )
        .with_mask(horizontal_mask(kernel, mask));
        let one_by_one = |scope: &mut Scope, suffix: &str, cin: usize, cout: usize| {
            Conv2d::new(
                &mut scope.scope(suffix),
                cin,
                cout,
                (1, 1),
                Conv2dOptions::default(),
                true,
            )
        };
        let vertical_to_horizontal = one_by_one(scope, "vertical_to_horizontal", 2 * c, 2 * c);
        let horizontal_out = one_by_one(scope, "horizontal_out", c, c);
        let class_bias =
            (classes > 0).then(|| scope.constant("class_bias", &[classes, 2 * c], 0.0));
        Self {
            mask,
            vertical,
            horizontal,
            vertical_to_horizontal,
            horizontal_out,
            class_bias,
        }
    }

    /// Applies the layer. `labels` is the class of each item broadcast to a [B, H, W] grid (used
    /// only by conditional layers). Returns the next stacks and this layer's skip output.
    pub fn forward(&self, x: &Stacks, labels: Option<&Tensor>) -> (Stacks, Tensor) {
        let mut v_pre = self.vertical.forward(&x.vertical);
        let mut h_pre = self
            .horizontal
            .forward(&x.horizontal)
            .add(&self.vertical_to_horizontal.forward(&v_pre));
        if let (Some(table), Some(labels)) = (&self.class_bias, labels) {
            let bias = gather::gather(labels, table.tensor());
            v_pre = v_pre.add(&bias);
            h_pre = h_pre.add(&bias);
        }
        let skip = self.horizontal_out.forward(&elementwise::gate(&h_pre));
        // the first layer's input holds the current code: no residual path around it
        let horizontal = match self.mask {
            MaskType::A => skip.clone(),
            MaskType::B => x.horizontal.add(&skip),
        };
        let vertical = elementwise::gate(&v_pre);
        (
            Stacks {
                vertical,
                horizontal,
            },
            skip,
        )
    }
}
