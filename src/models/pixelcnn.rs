//! The Gated PixelCNN prior over VQ-VAE code grids (van den Oord et al. 2016): code embedding,
//! a first gated layer with type-A masks, gated residual layers with type-B masks, skip
//! connections summed into a ReLU / 1x1 conv head that gives K logits per position; optionally
//! conditioned on a class, and on a grid of codes of half the side (a VQ-VAE-2's top codes, for
//! the prior over its bottom codes). With attention it is a PixelSNAIL-style prior (Chen et al.
//! 2018): causal multi-head self-attention over the whole grid between the gated layers, so that
//! a position sees every code before it, not only those within the convolutions' reach.

use crate::error::{Error, Result, Setting};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::nn::{
    CausalSelfAttention, Conv2d, ConvTranspose2d, Embedding, FlatBuffer, GatedResidualBlock,
    MaskType, ParamStore, Scope, Stacks,
};
use crate::ops::attention;
use crate::ops::conv::{Conv2dOptions, ConvTranspose2dOptions};
use crate::ops::softmax;
use crate::tensor::Tensor;

mod incremental;
pub use incremental::IncrementalPixelCnn;

/// The attention of a prior over a VQ-VAE-2's top codes, unless asked otherwise: a block after
/// every 2 gated layers (see [`PixelCnnConfig::attention_every`]).
pub const TOP_ATTENTION_EVERY: usize = 2;

/// Every size of the prior.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PixelCnnConfig {
    /// Number of codes K (the VQ-VAE's codebook size).
    pub codes: usize,
    /// Channels C of both stacks.
    pub channels: usize,
    /// Gated layers L (the first has type-A masks).
    pub layers: usize,
    /// Odd side of the masked kernels (vertical k x k, horizontal 1 x k).
    pub kernel: usize,
    /// Channels of the hidden 1x1 conv of the output head.
    pub head: usize,
    /// Classes of the per-class bias; 0 for an unconditional prior.
    pub classes: usize,
    /// Codes of the grid the prior is conditioned on (a VQ-VAE-2's top codes, at half the grid's
    /// side); 0 for none.
    pub condition_codes: usize,
    /// Causal self-attention after every this many gated layers (not after the last); 0 for none.
    pub attention_every: usize,
    /// Heads of each attention block (they divide the channels).
    pub heads: usize,
}

impl Default for PixelCnnConfig {
    fn default() -> Self {
        Self {
            codes: 512,
            channels: 64,
            layers: 10,
            kernel: 3,
            head: 256,
            classes: 0,
            condition_codes: 0,
            attention_every: 0,
            heads: 4,
        }
    }
}

impl PixelCnnConfig {
    /// Checks every size.
    pub fn validate(&self) -> Result<()> {
        if !(1..=softmax::MAX_CLASSES).contains(&self.codes) {
            return Err(Error::InvalidArgument(format!(
                "the prior supports 1..={} codes, got {}",
                softmax::MAX_CLASSES,
                self.codes
            )));
        }
        for (setting, value) in [
            (Setting::Channels, self.channels),
            (Setting::Layers, self.layers),
            (Setting::Head, self.head),
        ] {
            setting.require_positive(value as u64)?;
        }
        if self.condition_codes > softmax::MAX_CLASSES {
            return Err(Error::InvalidArgument(format!(
                "the conditioning grid supports 1..={} codes, got {}",
                softmax::MAX_CLASSES,
                self.condition_codes
            )));
        }
        if self.attention_every > 0 {
            if self.attention_every >= self.layers {
                return Err(Error::InvalidArgument(format!(
                    "attention after every {} layers needs more than {} layers (there is none after the last), got {}",
                    self.attention_every, self.attention_every, self.layers
                )));
            }
            if self.heads == 0 || !self.channels.is_multiple_of(self.heads) {
                return Err(Error::InvalidArgument(format!(
                    "the {} attention heads must divide the {} channels",
                    self.heads, self.channels
                )));
            }
        }
        if self.kernel < 3 || self.kernel.is_multiple_of(2) || self.kernel > 7 {
            return Err(Error::setting(
                Setting::Kernel,
                format!("must be 3, 5 or 7, got {}", self.kernel),
            ));
        }
        Ok(())
    }

    /// Whether an attention block follows gated layer `layer`.
    fn attends_after(&self, layer: usize) -> bool {
        self.attention_every > 0
            && (layer + 1).is_multiple_of(self.attention_every)
            && layer + 1 < self.layers
    }

    /// Elements of the largest activation of a training step on `batch` grids of `grid`: the
    /// logits, the gated layers' pre-activations, or the attention's scores.
    pub fn largest_activation(&self, batch: usize, grid: [usize; 2]) -> usize {
        let positions = grid[0].saturating_mul(grid[1]);
        let per_position = self.codes.max(self.head).max(2 * self.channels);
        let mut largest = batch.saturating_mul(positions).saturating_mul(per_position);
        if self.attention_every > 0 {
            let scores = batch
                .saturating_mul(self.heads)
                .saturating_mul(positions)
                .saturating_mul(positions);
            largest = largest.max(scores);
        }
        largest
    }

    /// Refuses grids without positions, grids the attention cannot take, and for a prior
    /// conditioned on top grids, bottom grids that are not twice a top grid.
    pub fn check_grid(&self, grid: [usize; 2]) -> Result<()> {
        if grid.contains(&0) {
            return Err(Error::InvalidArgument(format!(
                "a code grid needs at least one position along each side, got {}x{}",
                grid[0], grid[1]
            )));
        }
        if self.condition_codes > 0 && grid.iter().any(|side| side % 2 != 0) {
            return Err(Error::InvalidArgument(format!(
                "a prior conditioned on top grids takes bottom grids twice their size (even \
                 sides), got {}x{}",
                grid[0], grid[1]
            )));
        }
        let positions = grid[0].saturating_mul(grid[1]);
        if self.attention_every > 0 && positions > attention::MAX_POSITIONS {
            return Err(Error::InvalidArgument(format!(
                "attention takes grids of at most {} positions, got {}x{}",
                attention::MAX_POSITIONS,
                grid[0],
                grid[1]
            )));
        }
        Ok(())
    }
}

/// Gated PixelCNN over code grids [B, H, W].
pub struct PixelCnn {
    /// The configuration.
    pub config: PixelCnnConfig,
    /// All parameters.
    pub params: ParamStore,
    embedding: Embedding,
    layers: Vec<GatedResidualBlock>,
    /// The attention block after each layer, if any.
    attention: Vec<Option<CausalSelfAttention>>,
    head: [Conv2d; 2],
    condition: Option<(Embedding, ConvTranspose2d)>,
}

impl PixelCnn {
    /// Builds the prior with parameters drawn from `seed`. Parameter names: `embedding.weight`
    /// [K, C], `layers.{i}.*` (see [`GatedResidualBlock`]), `head.{0,2}.weight/bias` (1x1 convs);
    /// a prior conditioned on a grid of codes also has the conditioning stack: the embedding of
    /// those codes `condition.embedding.weight` [K', C] and `condition.upsample.*`, a transposed
    /// convolution (C -> C, 4x4, stride 2) to the grid's size, whose output (after a ReLU) every
    /// layer adds to both stacks through its `condition` 1x1 convolution. A layer followed by
    /// attention has it in `layers.{i}.attention.*` (see [`CausalSelfAttention`]); its output is
    /// added to the horizontal stack.
    pub fn new(gpu: &Gpu, config: PixelCnnConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let (k, c) = (config.codes, config.channels);
        let mut ps = ParamStore::new(gpu, seed);
        let embedding = Embedding::uniform(&mut ps.scope("embedding"), k, c, 1.0);
        let layers = (0..config.layers)
            .map(|i| {
                let mask = if i == 0 { MaskType::A } else { MaskType::B };
                let mut scope = ps.scope(format_args!("layers.{i}"));
                let conditioned = if config.condition_codes > 0 { c } else { 0 };
                GatedResidualBlock::new(
                    &mut scope,
                    c,
                    config.kernel,
                    mask,
                    config.classes,
                    conditioned,
                )
            })
            .collect();
        let attention = (0..config.layers)
            .map(|i| {
                config.attends_after(i).then(|| {
                    let mut scope = ps.scope(format_args!("layers.{i}.attention"));
                    CausalSelfAttention::new(&mut scope, c, config.heads)
                })
            })
            .collect();
        let one_by_one = |scope: &mut Scope, cin: usize, cout: usize| {
            Conv2d::new(scope, cin, cout, (1, 1), Conv2dOptions::default(), true)
        };
        let head = [
            one_by_one(&mut ps.scope("head.0"), c, config.head),
            one_by_one(&mut ps.scope("head.2"), config.head, k),
        ];
        let condition = (config.condition_codes > 0).then(|| {
            let embedding = Embedding::uniform(
                &mut ps.scope("condition.embedding"),
                config.condition_codes,
                c,
                1.0,
            );
            let upsample = ConvTranspose2d::new(
                &mut ps.scope("condition.upsample"),
                c,
                c,
                (4, 4),
                ConvTranspose2dOptions::new(2, 1, 0),
                true,
            );
            (embedding, upsample)
        });
        ps.finalize()?;
        Ok(Self {
            config,
            params: ps,
            embedding,
            layers,
            attention,
            head,
            condition,
        })
    }

    /// Logits [B, K, H, W] of the code at every position of `codes` [B, H, W] (indices as f32)
    /// given the codes before it in raster order. `labels` [B, H, W] holds each item's class at
    /// every position; required by a conditional prior, ignored otherwise.
    ///
    /// # Panics
    /// If the prior is conditional and `labels` is `None` (callers check the data first).
    pub fn forward(&self, codes: &Tensor, labels: Option<&Tensor>) -> Tensor {
        self.forward_conditioned(codes, labels, None)
    }

    /// [`PixelCnn::forward`] of a prior conditioned on a grid of codes: `condition` [B, H/2, W/2]
    /// holds them (indices as f32).
    ///
    /// # Panics
    /// If the prior is class-conditional and `labels` is `None`, or conditioned on a grid and
    /// `condition` is `None` (callers check the data first).
    pub fn forward_conditioned(
        &self,
        codes: &Tensor,
        labels: Option<&Tensor>,
        condition: Option<&Tensor>,
    ) -> Tensor {
        assert!(
            self.config.classes == 0 || labels.is_some(),
            "a conditional prior needs labels"
        );
        let features = self.condition_features(condition);
        let x = self.embedding.forward(codes);
        let mut stacks = Stacks {
            vertical: x.clone(),
            horizontal: x,
        };
        let mut skips: Option<Tensor> = None;
        for (layer, attention) in self.layers.iter().zip(&self.attention) {
            let (mut next, skip) = layer.forward(&stacks, labels, features.as_ref());
            if let Some(attention) = attention {
                next.horizontal = next.horizontal.add(&attention.forward(&next.horizontal));
            }
            skips = Some(match skips {
                Some(s) => s.add(&skip),
                None => skip,
            });
            stacks = next;
        }
        let skips = skips.expect("at least one layer");
        self.head[1].forward(&self.head[0].forward_relu(&skips.relu()))
    }

    /// The conditioning stack's feature map [B, C, H, W] of the condition grid [B, H/2, W/2], for
    /// a prior conditioned on one (`None` otherwise).
    ///
    /// # Panics
    /// If the prior is conditioned on a grid and `condition` is `None`.
    fn condition_features(&self, condition: Option<&Tensor>) -> Option<Tensor> {
        self.condition.as_ref().map(|(embedding, upsample)| {
            let codes = condition.expect("a prior conditioned on a grid needs its codes");
            upsample.forward_relu(&embedding.forward(codes))
        })
    }

    /// The class labels a conditional prior takes for grids of `positions` codes: each item's label
    /// repeated at every position, as the `labels` grid of [`PixelCnn::forward`].
    pub fn label_grid(labels: &[u32], positions: usize) -> Vec<f32> {
        labels
            .iter()
            .flat_map(|&l| std::iter::repeat_n(l as f32, positions))
            .collect()
    }
}

/// Format tag of prior checkpoints.
pub(crate) const FORMAT: &str = "vqgpu.pixelcnn.1";

impl PixelCnn {
    /// Adds the parameters and the sizes to a checkpoint.
    pub fn write_state(&self, ck: &mut Checkpoint) -> Result<()> {
        self.params.save_into(ck, FlatBuffer::Values, "")?;
        let c = &self.config;
        ck.set("format", FORMAT);
        ck.set("codes", c.codes);
        ck.set("channels", c.channels);
        ck.set("layers", c.layers);
        ck.set("kernel", c.kernel);
        ck.set("head", c.head);
        ck.set("classes", c.classes);
        ck.set("condition_codes", c.condition_codes);
        ck.set("attention_every", c.attention_every);
        ck.set("heads", c.heads);
        Ok(())
    }

    /// The prior saved in `ck`.
    pub fn from_checkpoint(gpu: &Gpu, ck: &Checkpoint) -> Result<Self> {
        let model = Self::new(gpu, Self::from_checkpoint_config(ck)?, 0)?;
        model.params.load_from(ck, FlatBuffer::Values, "")?;
        Ok(model)
    }

    /// The sizes of the prior saved in `ck`.
    pub fn from_checkpoint_config(ck: &Checkpoint) -> Result<PixelCnnConfig> {
        ck.expect_format(FORMAT, "is not a vqgpu PixelCNN prior checkpoint")?;
        Ok(PixelCnnConfig {
            codes: ck.meta_parse("codes")?,
            channels: ck.meta_parse("channels")?,
            layers: ck.meta_parse("layers")?,
            kernel: ck.meta_parse("kernel")?,
            head: ck.meta_parse("head")?,
            classes: ck.meta_parse("classes")?,
            // checkpoints from before conditioning have no such entry
            condition_codes: ck.meta_parse_or("condition_codes", 0)?,
            // nor from before attention
            attention_every: ck.meta_parse_or("attention_every", 0)?,
            heads: ck.meta_parse_or("heads", PixelCnnConfig::default().heads)?,
        })
    }
}
