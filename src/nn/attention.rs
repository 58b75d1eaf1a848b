//! Causal multi-head self-attention over the positions of a feature map, in raster order, as in
//! PixelSNAIL (Chen et al. 2018): every position attends to itself and the positions before it.
//! Queries, keys and values are 1x1 convolutions of the map joined with two coordinate channels
//! (the row and the column, each scaled to [-1, 1)), which tell the attention where a position is.

use crate::gpu::{profile, Gpu};
use crate::nn::{Conv2d, Scope, WindowedConv2d};
use crate::ops::attention::{attend_at, causal_attention};
use crate::ops::conv::Conv2dOptions;
use crate::ops::elementwise::concat_channels;
use crate::ops::window::{read_window, write_window, Window};
use crate::tensor::Tensor;

/// Channels of the coordinates joined to the map: row and column.
const COORDINATES: usize = 2;

/// The block's parameters in its scope: `query`, `key`, `value` (1x1 convolutions from the C
/// channels and the coordinates to C) and `out` (1x1, C to C).
pub struct CausalSelfAttention {
    heads: usize,
    query: Conv2d,
    key: Conv2d,
    value: Conv2d,
    out: Conv2d,
}

/// The coordinate channels [B, 2, H, W] of `batch` maps of `grid` = (H, W).
fn coordinates(gpu: &Gpu, batch: usize, grid: [usize; 2]) -> Tensor {
    let [h, w] = grid;
    let scaled = |i: usize, n: usize| 2.0 * i as f32 / n as f32 - 1.0;
    let one: Vec<f32> = (0..h * w)
        .map(|p| scaled(p / w, h))
        .chain((0..h * w).map(|p| scaled(p % w, w)))
        .collect();
    let all: Vec<f32> = std::iter::repeat_n(one, batch).flatten().collect();
    Tensor::from_slice(gpu, &[batch, COORDINATES, h, w], &all)
        .expect("the coordinates fill their shape")
}

/// The block's state while a batch of maps is computed one position at a time (see
/// [`CausalSelfAttention::step`]).
pub struct AttentionCache {
    /// The keys [B, C, H, W], final at every position stepped so far.
    keys: Tensor,
    /// The values [B, C, H, W], final at every position stepped so far.
    values: Tensor,
    coordinates: Tensor,
    /// query, key, value, out.
    convs: [WindowedConv2d; 4],
}

impl CausalSelfAttention {
    /// A block over `channels` channels in `heads` heads (`heads` divides `channels`).
    pub fn new(scope: &mut Scope, channels: usize, heads: usize) -> Self {
        let mut one_by_one = |name: &str, cin: usize| {
            Conv2d::new(
                &mut scope.scope(name),
                cin,
                channels,
                (1, 1),
                Conv2dOptions::default(),
                true,
            )
        };
        let with_coordinates = channels + COORDINATES;
        Self {
            heads,
            query: one_by_one("query", with_coordinates),
            key: one_by_one("key", with_coordinates),
            value: one_by_one("value", with_coordinates),
            out: one_by_one("out", channels),
        }
    }

    /// The attention output [B, C, H, W] at every position of x [B, C, H, W], from x at that
    /// position and the positions before it (the caller adds it to x).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let _layer = profile::layer(self.out.weight.layer_name());
        let grid = [x.dim(2), x.dim(3)];
        let input = concat_channels(x, &coordinates(x.gpu(), x.dim(0), grid));
        let attended = causal_attention(
            &self.query.forward(&input),
            &self.key.forward(&input),
            &self.value.forward(&input),
            self.heads,
        );
        self.out.forward(&attended)
    }

    /// An empty cache for `batch` maps of `grid` = (H, W) of the block's channels. It holds a copy
    /// of the block's weights.
    pub fn cache(&self, gpu: &Gpu, batch: usize, grid: [usize; 2]) -> AttentionCache {
        let channels = self.out.weight.shape()[0];
        AttentionCache {
            keys: Tensor::zeros(gpu, &[batch, channels, grid[0], grid[1]]),
            values: Tensor::zeros(gpu, &[batch, channels, grid[0], grid[1]]),
            coordinates: coordinates(gpu, batch, grid),
            convs: [
                self.query.windowed(),
                self.key.windowed(),
                self.value.windowed(),
                self.out.windowed(),
            ],
        }
    }

    /// The attention output [B, C, 1, 1] at (`row`, `col`) of x [B, C, H, W] (final up to that
    /// position), keeping that position's key and value for the positions after it: equal to
    /// [`CausalSelfAttention::forward`] there, bit for bit on one adapter.
    pub fn step(&self, x: &Tensor, cache: &AttentionCache, row: usize, col: usize) -> Tensor {
        let at = Window::at(row, col);
        let grid = [x.dim(2), x.dim(3)];
        let input = concat_channels(&read_window(x, at), &read_window(&cache.coordinates, at));
        let one = Window::whole(1, 1);
        let [query, key, value, out] = &cache.convs;
        write_window(&cache.keys, &key.forward(&input, one, grid), at);
        write_window(&cache.values, &value.forward(&input, one, grid), at);
        let attended = attend_at(
            &query.forward(&input, one, grid),
            &cache.keys,
            &cache.values,
            self.heads,
            row * grid[1] + col,
        );
        out.forward(&attended, one, grid)
    }
}
