//! The residual stack of the conv trunks: `x + Conv1x1(ReLU(Conv3x3(ReLU(x))))` per layer and a
//! ReLU after the last layer, in the two layouts vqgpu's models use (see [`ResidualLayout`]).

use crate::nn::{Conv2d, Scope};
use crate::ops::conv::Conv2dOptions;
use crate::tensor::Tensor;

/// How a stack's layers are named and whether their convolutions have biases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResidualLayout {
    /// The one-level reference model: the stack is one item of the enclosing sequence
    /// (`{index}.layers.{i}.block.{1,3}.weight`), its convolutions without bias.
    Module,
    /// VQ-VAE-2's layout: each layer is an item of the enclosing sequence, numbered on from the
    /// stack's index (`{index + i}.conv.{1,3}.{weight,bias}`), its convolutions with bias.
    Sequence,
}

/// A stack of residual layers.
pub struct ResidualStack {
    layers: Vec<(Conv2d, Conv2d)>,
}

impl ResidualStack {
    /// `count` residual layers on `channels` channels with `hidden` channels inside, at item
    /// `index` of the sequence in `scope`, named and biased as `layout` says.
    pub fn new(
        scope: &mut Scope,
        index: usize,
        channels: usize,
        hidden: usize,
        count: usize,
        layout: ResidualLayout,
    ) -> Self {
        let layers = (0..count)
            .map(|i| {
                let (mut block, bias) = match layout {
                    ResidualLayout::Module => {
                        (scope.scope(format_args!("{index}.layers.{i}.block")), false)
                    }
                    ResidualLayout::Sequence => {
                        (scope.scope(format_args!("{}.conv", index + i)), true)
                    }
                };
                let conv3 = Conv2d::new(
                    &mut block.scope(1),
                    channels,
                    hidden,
                    (3, 3),
                    Conv2dOptions::new(1, 1),
                    bias,
                );
                let conv1 = Conv2d::new(
                    &mut block.scope(3),
                    hidden,
                    channels,
                    (1, 1),
                    Conv2dOptions::default(),
                    bias,
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
            x = conv1.forward_add(&conv3.forward_relu(&x.relu()), &x);
        }
        x.relu()
    }
}
