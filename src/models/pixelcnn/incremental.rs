//! The prior evaluated one position at a time (incremental sampling), with every layer's
//! activations at the positions already drawn kept on the GPU.

use super::PixelCnn;
use crate::error::Result;
use crate::nn::{AttentionCache, LayerCache, WindowedConv2d};
use crate::ops::conv::dims4;
use crate::ops::window::{read_window, read_window_plus, write_position, write_window, Window};
use crate::tensor::Tensor;

/// The prior evaluated one position at a time over a batch of code grids, in raster order, with
/// every layer's activations at the positions already drawn kept on the GPU (fast generation for
/// convolutional autoregressive models, Ramachandran et al. 2017): when a row starts, every layer's
/// vertical stack is computed along that row; at each position, only that position of every
/// horizontal stack and of the head. The cost of a grid is linear in its positions.
pub struct IncrementalPixelCnn<'a> {
    model: &'a PixelCnn,
    grid: [usize; 2],
    /// The embedded codes [B, C, H, W], final before the current position.
    embedded: Tensor,
    layers: Vec<LayerCache>,
    /// The attention blocks' keys and values.
    attention: Vec<Option<AttentionCache>>,
    /// The head's two 1x1 convolutions.
    head: [WindowedConv2d; 2],
    /// The flat position whose logits come next.
    position: usize,
}

impl PixelCnn {
    /// Starts drawing `batch` grids of `grid` = (H, W) codes; a conditional prior needs each
    /// item's class in `labels`, a prior conditioned on a grid the [B, H/2, W/2] codes of
    /// `condition` (its conditioning stack runs once, here).
    ///
    /// # Panics
    /// If the prior is conditional and `labels` is `None` or not `batch` long, or conditioned on
    /// a grid and `condition` is `None`.
    pub fn incremental(
        &self,
        batch: usize,
        grid: [usize; 2],
        labels: Option<&[u32]>,
        condition: Option<&Tensor>,
    ) -> Result<IncrementalPixelCnn<'_>> {
        assert!(
            self.config.classes == 0 || labels.is_some_and(|l| l.len() == batch),
            "a conditional prior needs a label per grid"
        );
        let features = self.condition_features(condition);
        let gpu = self.params.gpu();
        let layers = self
            .layers
            .iter()
            .map(|layer| layer.cache(gpu, batch, grid, labels, features.as_ref()))
            .collect::<Result<_>>()?;
        let attention = self
            .attention
            .iter()
            .map(|block| block.as_ref().map(|b| b.cache(gpu, batch, grid)))
            .collect();
        Ok(IncrementalPixelCnn {
            model: self,
            grid,
            embedded: Tensor::zeros(gpu, &[batch, self.config.channels, grid[0], grid[1]]),
            layers,
            attention,
            head: [self.head[0].windowed(), self.head[1].windowed()],
            position: 0,
        })
    }
}

impl IncrementalPixelCnn<'_> {
    /// The flat position (row-major) whose logits [`IncrementalPixelCnn::next_logits`] gives next.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Logits [B, K, 1, 1] of the code at the current position, given the codes committed before it.
    ///
    /// # Panics
    /// If every position has been drawn.
    pub fn next_logits(&mut self) -> Tensor {
        let [h, w] = self.grid;
        assert!(self.position < h * w, "every position has been drawn");
        let (row, col) = (self.position / w, self.position % w);
        let layers = &self.model.layers;
        if col == 0 {
            for (i, layer) in layers.iter().enumerate() {
                let (done, rest) = self.layers.split_at_mut(i);
                let input = done.last().map_or(&self.embedded, |c| &c.vertical);
                layer.start_row(input, &mut rest[0], row);
            }
        }
        let mut skips: Option<Tensor> = None;
        for (i, layer) in layers.iter().enumerate() {
            let input = match i {
                0 => &self.embedded,
                _ => &self.layers[i - 1].horizontal,
            };
            let skip = layer.step(input, &self.layers[i], row, col);
            if let (Some(block), Some(cache)) = (&self.model.attention[i], &self.attention[i]) {
                let horizontal = &self.layers[i].horizontal;
                let at = Window::at(row, col);
                let attended = block.step(horizontal, cache, row, col);
                write_window(horizontal, &read_window_plus(horizontal, at, &attended), at);
            }
            skips = Some(match skips {
                Some(s) => s.add(&skip),
                None => skip,
            });
        }
        // the skips and the head at this position of the B grids side by side, [1, C, 1, B]
        let skips = skips.expect("at least one layer");
        let hidden = self.head[0].forward_side(&skips.relu(), self.grid);
        let logits = self.head[1].forward_side(&hidden.relu(), self.grid);
        let [_, k, _, batch] = dims4(&logits, "logits");
        let out = Tensor::uninit(logits.gpu(), &[batch, k, 1, 1]);
        write_position(&out, &logits, Window::at(0, 0), None);
        out
    }

    /// Takes the code now at the current position of `codes` [B, H, W] into the caches and moves
    /// to the next position.
    pub fn commit(&mut self, codes: &Tensor) {
        let [h, w] = self.grid;
        let batch = codes.dim(0);
        let at = Window::at(self.position / w, self.position % w);
        let code = read_window(&codes.reshape(&[batch, 1, h, w]), at).reshape(&[batch, 1, 1]);
        write_window(&self.embedded, &self.model.embedding.forward(&code), at);
        self.position += 1;
    }
}
