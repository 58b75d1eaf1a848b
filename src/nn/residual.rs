//! The residual stack of the reference VQ-VAE: `x + Conv1x1(ReLU(Conv3x3(ReLU(x))))` per layer,
//! both convolutions without bias, and a ReLU after the last layer.

use crate::nn::{Conv2d, Scope};
use crate::ops::conv::Conv2dOptions;
use crate::tensor::Tensor;

/// `Stack` of the reference model; parameters `layers.{i}.block.{1,3}.weight` in its scope.
pub struct ResidualStack {
    layers: Vec<(Conv2d, Conv2d)>,
}

impl ResidualStack {
    /// `count` residual layers on `channels` channels with `hidden` channels inside.
    pub fn new(scope: &mut Scope, channels: usize, hidden: usize, count: usize) -> Self {
        let layers = (0..count)
            .map(|i| {
                let mut block = scope.scope(format_args!("layers.{i}.block"));
                let conv3 = Conv2d::new(
                    &mut block.scope(1),
                    channels,
                    hidden,
                    (3, 3),
                    Conv2dOptions::new(1, 1),
                    false,
                );
                let conv1 = Conv2d::new(
                    &mut block.scope(3),
                    hidden,
                    channels,
                    (1, 1),
                    Conv2dOptions::default(),
                    false,
                );
                (conv3, conv1)
            })
            .collect();
        Self { layers }
    }

    /// Applies every layer, then a ReLU.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut x = x.clone();
        for (conv3, conv1) in &self.layers {
            x = x.add(&conv1.forward(&conv3.forward(&x.relu()).relu()));
        }
        x.relu()
    }
}
