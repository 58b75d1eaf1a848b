//! The gated residual layer of Gated PixelCNN (van den Oord et al. 2016): a vertical stack that
//! sees the rows above, a horizontal stack that sees the pixels to the left in the current row,
//! both through masked convolutions, and the gate `tanh(a) * sigmoid(b)`.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::nn::{Conv2d, Param, Scope, WindowedConv2d};
use crate::ops::conv::{Conv2dOptions, SpatialMask};
use crate::ops::window::{read_position, read_window_plus, write_position, write_window, Window};
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

/// One gated layer's state while code grids are drawn position by position (see
/// [`GatedResidualBlock::start_row`] and [`GatedResidualBlock::step`]).
pub struct LayerCache {
    /// The layer's output vertical stack [B, C, H, W]: final in every row started so far.
    pub vertical: Tensor,
    /// The layer's output horizontal stack [B, C, H, W]: final at every position stepped so far.
    pub horizontal: Tensor,
    /// `vertical_to_horizontal` of the pre-gate vertical stack along the current row [B, 2C, 1, W].
    row_to_horizontal: Option<Tensor>,
    /// The layer's convolutions: vertical, horizontal, vertical_to_horizontal, horizontal_out.
    convs: [WindowedConv2d; 4],
    /// Each item's class bias along a row [B, 2C, 1, W] and at one position, side by side [1, 2C,
    /// 1, B].
    class_bias: Option<(Tensor, Tensor)>,
    /// What a conditioned layer adds to both stacks, over the whole grid [B, 2C, H, W].
    condition: Option<Tensor>,
}

/// One gated residual layer with parameters `vertical`, `horizontal`, `vertical_to_horizontal`,
/// `horizontal_out`, when class-conditional `class_bias` [classes, 2C], and when conditioned on
/// a feature map `condition` (a 1x1 convolution to 2C) in its scope.
pub struct GatedResidualBlock {
    mask: MaskType,
    vertical: Conv2d,
    horizontal: Conv2d,
    vertical_to_horizontal: Conv2d,
    horizontal_out: Conv2d,
    class_bias: Option<Param>,
    condition: Option<Conv2d>,
}

impl GatedResidualBlock {
    /// A layer on `channels` channels with `kernel x kernel` vertical and `1 x kernel` horizontal
    /// masked convolutions (`kernel` odd), a learned per-class bias when `classes > 0`, and a 1x1
    /// convolution of a `condition_channels`-channel feature map of the grid's size added to both
    /// stacks when `condition_channels > 0`.
    pub fn new(
        scope: &mut Scope,
        channels: usize,
        kernel: usize,
        mask: MaskType,
        classes: usize,
        condition_channels: usize,
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
        let condition = (condition_channels > 0)
            .then(|| one_by_one(scope, "condition", condition_channels, 2 * c));
        Self {
            mask,
            vertical,
            horizontal,
            vertical_to_horizontal,
            horizontal_out,
            class_bias,
            condition,
        }
    }

    /// Applies the layer. `labels` is the class of each item broadcast to a [B, H, W] grid (used
    /// only by class-conditional layers); `condition` the [B, condition_channels, H, W] feature
    /// map of a conditioned layer. Returns the next stacks and this layer's skip output.
    ///
    /// # Panics
    /// If the layer is conditioned and `condition` is `None`.
    pub fn forward(
        &self,
        x: &Stacks,
        labels: Option<&Tensor>,
        condition: Option<&Tensor>,
    ) -> (Stacks, Tensor) {
        let mut v_pre = self.vertical.forward(&x.vertical);
        // horizontal(x) + vertical_to_horizontal(v_pre), the sum made as the second one is stored
        let from_left = self.horizontal.forward(&x.horizontal);
        let mut h_pre = self.vertical_to_horizontal.forward_add(&v_pre, &from_left);
        if let (Some(table), Some(labels)) = (&self.class_bias, labels) {
            let bias = gather::gather(labels, table.tensor());
            v_pre = v_pre.add(&bias);
            h_pre = h_pre.add(&bias);
        }
        if let Some(conv) = &self.condition {
            let added = conv.forward(condition.expect("a conditioned layer needs its feature map"));
            v_pre = v_pre.add(&added);
            h_pre = h_pre.add(&added);
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

/// Incremental evaluation, for drawing grids one position at a time in raster order: because the
/// layer is causal, its outputs at the positions already drawn never change, so they are kept in a
/// [`LayerCache`] and only the new ones are computed. The windowed convolutions sum in the order
/// of the full ones, so the results equal [`GatedResidualBlock::forward`] at those positions bit for
/// bit on one adapter.
impl GatedResidualBlock {
    /// An empty cache for `batch` grids of `grid` = (H, W), with each item's class when the layer
    /// is conditional (`labels` must then be given), and the [B, condition_channels, H, W] feature
    /// map of a conditioned layer (computed through its 1x1 convolution once, here). It holds a
    /// copy of the layer's weights.
    ///
    /// # Panics
    /// If the layer is conditioned and `condition` is `None`.
    pub fn cache(
        &self,
        gpu: &Gpu,
        batch: usize,
        grid: [usize; 2],
        labels: Option<&[u32]>,
        condition: Option<&Tensor>,
    ) -> Result<LayerCache> {
        let [h, w] = grid;
        let channels = self.horizontal_out.weight.shape()[0];
        let class_bias = match (&self.class_bias, labels) {
            (Some(table), Some(labels)) => {
                let along_row = |width: usize| -> Result<Tensor> {
                    let grid: Vec<f32> = labels
                        .iter()
                        .flat_map(|&l| std::iter::repeat_n(l as f32, width))
                        .collect();
                    let indices = Tensor::from_slice(gpu, &[batch, 1, width], &grid)?;
                    Ok(gather::gather(&indices, table.tensor()))
                };
                let at_position = read_position(&along_row(1)?, Window::at(0, 0), None);
                Some((along_row(w)?, at_position))
            }
            _ => None,
        };
        Ok(LayerCache {
            vertical: Tensor::zeros(gpu, &[batch, channels, h, w]),
            horizontal: Tensor::zeros(gpu, &[batch, channels, h, w]),
            row_to_horizontal: None,
            convs: [
                self.vertical.windowed(),
                self.horizontal.windowed(),
                self.vertical_to_horizontal.windowed(),
                self.horizontal_out.windowed(),
            ],
            class_bias,
            condition: self.condition.as_ref().map(|conv| {
                conv.forward(condition.expect("a conditioned layer needs its feature map"))
            }),
        })
    }

    /// Computes row `row` of the output vertical stack from `vertical` [B, C, H, W], the input
    /// vertical stack (final in the rows this layer's mask reads: those above `row`, and `row`
    /// itself for a type-B layer), and what it adds to the horizontal stack along the row.
    pub fn start_row(&self, vertical: &Tensor, cache: &mut LayerCache, row: usize) {
        let map = [vertical.dim(2), vertical.dim(3)];
        let width = map[1];
        let [vertical_conv, _, to_horizontal, _] = &cache.convs;
        let v_pre = vertical_conv.forward(vertical, Window::row(row, width), map);
        cache.row_to_horizontal = Some(to_horizontal.forward(&v_pre, Window::whole(1, width), map));
        let mut v_pre = match &cache.class_bias {
            Some((along_row, _)) => v_pre.add(along_row),
            None => v_pre,
        };
        if let Some(map) = &cache.condition {
            v_pre = read_window_plus(map, Window::row(row, width), &v_pre);
        }
        write_window(
            &cache.vertical,
            &elementwise::gate(&v_pre),
            Window::row(row, width),
        );
    }

    /// Computes position (`row`, `col`) of the output horizontal stack from `horizontal`
    /// [B, C, H, W], the input horizontal stack (final up to that position), after
    /// [`GatedResidualBlock::start_row`] of `row`. Returns the skip output there, the B maps side
    /// by side [1, C, 1, B] (see [`read_position`]).
    ///
    /// # Panics
    /// If the row was not started.
    pub fn step(&self, horizontal: &Tensor, cache: &LayerCache, row: usize, col: usize) -> Tensor {
        let at = Window::at(row, col);
        let map = [horizontal.dim(2), horizontal.dim(3)];
        let from_vertical = cache
            .row_to_horizontal
            .as_ref()
            .expect("start_row before step");
        let [_, horizontal_conv, _, horizontal_out] = &cache.convs;
        // the position of the N maps side by side, [1, channels, 1, N]; sums of two operands
        // are made as one is read or written (one launch each)
        let from_left = horizontal_conv.forward_position(horizontal, at, map);
        let mut h_pre = read_position(from_vertical, Window::at(0, col), Some(&from_left));
        if let Some((_, at_position)) = &cache.class_bias {
            h_pre = h_pre.add(at_position);
        }
        if let Some(map) = &cache.condition {
            h_pre = read_position(map, at, Some(&h_pre));
        }
        let skip = horizontal_out.forward_side(&elementwise::gate(&h_pre), map);
        let residual = match self.mask {
            MaskType::A => None,
            MaskType::B => Some(horizontal),
        };
        write_position(&cache.horizontal, &skip, at, residual);
        skip
    }
}
