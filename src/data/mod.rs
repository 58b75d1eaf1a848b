//! Datasets of u8 images, the background batch loader, and the code grids the prior trains on.

mod cifar;
mod codes;
mod folder;
mod idx;
mod loader;
mod shapes;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use cifar::Cifar10;
pub use codes::{CodeFile, CodeGrids, CodeLevel, CODES_FORMAT};
pub use folder::Folder;
pub use idx::Idx;
pub use loader::{batch_indices, Batch, BatchOf, Loader, Source};
pub use shapes::Shapes;

use crate::error::{Error, Result};

/// Seed of the built-in dataset as `open` serves it: one fixed dataset, whatever the training seed.
pub const SHAPES_SEED: u64 = 0;

/// Opens dataset `name` (shapes, mnist, fashion-mnist, cifar10, folder) for `split`. `path` is the
/// data directory where one is needed; `size` is the side of `folder` and `shapes` images.
pub fn open(
    name: &str,
    path: Option<&Path>,
    split: Split,
    size: usize,
) -> Result<Arc<dyn Dataset>> {
    let need_path = |what: &str| -> Result<PathBuf> {
        path.map(Path::to_path_buf).ok_or_else(|| {
            Error::InvalidArgument(format!("--data DIR is required for the {what} dataset"))
        })
    };
    let data: Arc<dyn Dataset> = match name {
        "shapes" => Arc::new(Shapes::new(SHAPES_SEED, split).with_side(size)?),
        "fashion-mnist" => Arc::new(Idx::open(
            &path.map_or_else(Idx::default_dir, Path::to_path_buf),
            split,
        )?),
        "mnist" => Arc::new(Idx::open(&need_path("mnist")?, split)?),
        "cifar10" => Arc::new(Cifar10::open(&need_path("cifar10")?, split)?),
        "folder" => Arc::new(Folder::open(&need_path("folder")?, split, size)?),
        other => {
            return Err(Error::InvalidArgument(format!(
                "unknown dataset {other:?}: use shapes, mnist, fashion-mnist, cifar10 or folder"
            )))
        }
    };
    if data.is_empty() {
        return Err(Error::Dataset(format!(
            "the {name} {split:?} split holds no images"
        )));
    }
    Ok(data)
}

/// Which images to use: a dataset name, its directory where it needs one, and the side of
/// `folder` images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataSpec {
    /// shapes, mnist, fashion-mnist, cifar10 or folder.
    pub dataset: String,
    /// The data directory (fashion-mnist has a default).
    pub dir: Option<PathBuf>,
    /// Side of the images of the folder and shapes datasets (`None`: [`DEFAULT_IMAGE_SIZE`]); an
    /// error for the other datasets, whose images have their own size.
    pub image_size: Option<usize>,
}

/// The default side of the folder and shapes datasets' images.
pub const DEFAULT_IMAGE_SIZE: usize = 32;

impl Default for DataSpec {
    fn default() -> Self {
        Self {
            dataset: "shapes".into(),
            dir: None,
            image_size: None,
        }
    }
}

impl DataSpec {
    /// The data in words, as a checkpoint records it: the dataset's name, with the image side
    /// for `folder` (`folder@64`) and for `shapes` at another side than 32 (`shapes@64`).
    pub fn describe(&self) -> String {
        let size = self.image_size.unwrap_or(DEFAULT_IMAGE_SIZE);
        match self.dataset.as_str() {
            "folder" => format!("folder@{size}"),
            "shapes" if size != DEFAULT_IMAGE_SIZE => format!("shapes@{size}"),
            name => name.to_string(),
        }
    }

    /// Opens one split (see [`open`]).
    pub fn open(&self, split: Split) -> Result<Arc<dyn Dataset>> {
        if self.image_size.is_some() && !["folder", "shapes"].contains(&self.dataset.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "--image-size applies to the folder and shapes datasets only; {} images have their own size",
                self.dataset
            )));
        }
        if self.dataset == "shapes" && self.dir.is_some() {
            return Err(Error::InvalidArgument(
                "--data applies to the mnist, fashion-mnist, cifar10 and folder datasets; shapes is built in (leave --data out, or name the dataset with --dataset)".into(),
            ));
        }
        let size = self.image_size.unwrap_or(DEFAULT_IMAGE_SIZE);
        open(&self.dataset, self.dir.as_deref(), split, size)
    }
}

/// Which part of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Training images.
    Train,
    /// Held-out test images.
    Test,
}

/// A random-access collection of same-sized u8 images (CHW) with optional labels.
pub trait Dataset: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;

    /// Whether there are no images.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (channels, height, width) of every image.
    fn image_shape(&self) -> [usize; 3];

    /// Writes image `index` as CHW bytes into `out` (`out.len()` = C x H x W).
    fn image(&self, index: usize, out: &mut [u8]);

    /// The class of image `index`, if the dataset has labels.
    fn label(&self, index: usize) -> Option<u32>;

    /// Number of classes, if the dataset has labels.
    fn classes(&self) -> Option<usize>;
}

/// Converts CHW bytes to model inputs in [-0.5, 0.5] (as the reference: x / 255 - 0.5).
pub fn to_input(bytes: &[u8], out: &mut [f32]) {
    for (o, &b) in out.iter_mut().zip(bytes) {
        *o = b as f32 / 255.0 - 0.5;
    }
}

/// Variance of the pixel values in [0, 1] over (up to) the first `limit` images: the scale of the
/// reconstruction loss, as in the reference.
pub fn pixel_variance(data: &dyn Dataset, limit: usize) -> f64 {
    let [c, h, w] = data.image_shape();
    let mut buf = vec![0u8; c * h * w];
    let (mut sum, mut sum_sq, mut n) = (0.0f64, 0.0f64, 0usize);
    for i in 0..data.len().min(limit) {
        data.image(i, &mut buf);
        for &b in &buf {
            let v = b as f64 / 255.0;
            sum += v;
            sum_sq += v * v;
        }
        n += buf.len();
    }
    if n == 0 {
        return 1.0;
    }
    let mean = sum / n as f64;
    (sum_sq / n as f64 - mean * mean).max(1e-8)
}
