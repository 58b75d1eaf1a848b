//! `nn.Embedding`: a table of vectors looked up by index, laid out NCHW for a grid of indices.

use crate::nn::{Param, Scope};
use crate::ops::gather;
use crate::tensor::Tensor;

/// A table `weight` [count, dim]; index grids [B, H, W] become [B, dim, H, W].
pub struct Embedding {
    /// The table.
    pub weight: Param,
}

impl Embedding {
    /// Registers `weight` [count, dim] in `scope`, drawn uniformly from `[-bound, bound]`.
    pub fn uniform(scope: &mut Scope, count: usize, dim: usize, bound: f32) -> Self {
        Self {
            weight: scope.uniform("weight", &[count, dim], bound),
        }
    }

    /// Registers `weight` [count, dim] in `scope`, every value `value`.
    pub fn constant(scope: &mut Scope, count: usize, dim: usize, value: f32) -> Self {
        Self {
            weight: scope.constant("weight", &[count, dim], value),
        }
    }

    /// Number of rows.
    pub fn count(&self) -> usize {
        self.weight.shape()[0]
    }

    /// The rows chosen by `indices` [B, H, W] (f32 holding exact integers), as [B, dim, H, W].
    /// The gradient reaches the table.
    pub fn forward(&self, indices: &Tensor) -> Tensor {
        let _layer = crate::gpu::profile::layer(self.weight.layer_name());
        gather::gather(indices, self.weight.tensor())
    }

    /// The same lookup with the table detached: no gradient reaches it.
    pub fn lookup_detached(&self, indices: &Tensor) -> Tensor {
        gather::gather(indices, &self.weight.tensor().detach())
    }
}
