//! A small convolutional image classifier: the feature network of `eval samples` (its pooled
//! features play the role Inception's play in FID) and the judge of class-conditional samples.
//! Conv 3x3, then two stride-2 4x4 convs doubling the channels, then a 3x3 conv, each followed by
//! ReLU; a global average pool gives the features, a linear layer the class logits.

use crate::error::{Error, Result, Setting};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::nn::{Conv2d, FlatBuffer, Linear, ParamStore};
use crate::ops::conv::Conv2dOptions;
use crate::ops::{reduce, softmax};
use crate::tensor::Tensor;

/// The sizes of a classifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassifierConfig {
    /// Image [C, H, W]; H and W multiples of 4.
    pub image_shape: [usize; 3],
    /// Channels of the first conv (the last two have 4x as many: the feature size).
    pub channels: usize,
    /// Number of classes.
    pub classes: usize,
}

impl ClassifierConfig {
    /// Checks every size.
    pub fn validate(&self) -> Result<()> {
        Setting::Channels.require_positive(self.channels as u64)?;
        if !(2..=softmax::MAX_CLASSES).contains(&self.classes) {
            return Err(Error::InvalidArgument(format!(
                "a classifier needs 2 to {} classes, got {}",
                softmax::MAX_CLASSES,
                self.classes
            )));
        }
        super::check_image_shape(self.image_shape, self.image_shape[0].max(1), 4)
    }

    /// Length of the feature vector of one image.
    pub fn features(&self) -> usize {
        4 * self.channels
    }
}

/// The classifier with its parameters (`convs.{0..3}.weight/bias`, `head.weight/bias`).
pub struct Classifier {
    /// The sizes.
    pub config: ClassifierConfig,
    /// All parameters.
    pub params: ParamStore,
    convs: Vec<Conv2d>,
    head: Linear,
}

/// Format tag of classifier checkpoints.
pub(crate) const FORMAT: &str = "vqgpu.classifier.1";

impl Classifier {
    /// A classifier with parameters drawn from `seed`.
    pub fn new(gpu: &Gpu, config: ClassifierConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let c = config.channels;
        let mut ps = ParamStore::new(gpu, seed);
        // (in, out, kernel, stride, padding)
        let layers = [
            (config.image_shape[0], c, 3, 1, 1),
            (c, 2 * c, 4, 2, 1),
            (2 * c, 4 * c, 4, 2, 1),
            (4 * c, 4 * c, 3, 1, 1),
        ];
        let convs = layers
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout, k, s, p))| {
                let options = Conv2dOptions::new(s, p);
                Conv2d::new(
                    &mut ps.scope(format_args!("convs.{i}")),
                    cin,
                    cout,
                    (k, k),
                    options,
                    true,
                )
            })
            .collect();
        let head = Linear::new(&mut ps.scope("head"), 4 * c, config.classes, true);
        ps.finalize()?;
        Ok(Self {
            config,
            params: ps,
            convs,
            head,
        })
    }

    /// The pooled features [B, 4C] of images x [B, C, H, W] (model units, [-0.5, 0.5]).
    pub fn features(&self, x: &Tensor) -> Tensor {
        let h = self
            .convs
            .iter()
            .fold(x.clone(), |h, conv| conv.forward_relu(&h));
        let [b, c, hh, ww] = [h.dim(0), h.dim(1), h.dim(2), h.dim(3)];
        reduce::mean_axis(&h.reshape(&[b, c, hh * ww]), 2)
    }

    /// Class logits [B, classes] of images x.
    pub fn logits(&self, x: &Tensor) -> Tensor {
        self.logits_of_features(&self.features(x))
    }

    /// Class logits [B, classes] of features [B, 4C] from [`Classifier::features`].
    pub fn logits_of_features(&self, features: &Tensor) -> Tensor {
        self.head.forward(features)
    }

    /// Mean cross-entropy (nats) of the logits of x against `labels` [B] (classes as f32).
    pub fn loss(&self, x: &Tensor, labels: &Tensor) -> Tensor {
        softmax::cross_entropy(&self.logits(x), labels).mean()
    }

    /// Adds the parameters and the sizes to a checkpoint.
    pub fn write_state(&self, ck: &mut Checkpoint) -> Result<()> {
        self.params.save_into(ck, FlatBuffer::Values, "")?;
        ck.set("format", FORMAT);
        ck.set_dims("image_shape", &self.config.image_shape);
        ck.set("channels", self.config.channels);
        ck.set("classes", self.config.classes);
        Ok(())
    }

    /// The classifier saved in `ck`.
    pub fn from_checkpoint(gpu: &Gpu, ck: &Checkpoint) -> Result<Self> {
        ck.expect_format(
            FORMAT,
            "is not a vqgpu classifier checkpoint (`train classifier`)",
        )?;
        let config = ClassifierConfig {
            image_shape: ck.dims("image_shape")?,
            channels: ck.meta_parse("channels")?,
            classes: ck.meta_parse("classes")?,
        };
        let model = Self::new(gpu, config, 0)?;
        model.params.load_from(ck, FlatBuffer::Values, "")?;
        Ok(model)
    }
}
