//! `latent-map`: for a VAE with a 2-D flat latent, the decoded manifold over a grid of z and a
//! scatter plot of the test images' posterior means coloured by label.

use std::path::PathBuf;

use crate::autograd;
use crate::data::{DataSpec, Dataset, Split};
use crate::error::{Error, Result, Setting};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::io::{atomic, grid, plot};
use crate::models::autoencoder::{Autoencoder, Bottleneck};
use crate::tensor::Tensor;

use super::load_images;

/// The largest side of the decoded grid (its images are decoded in one batch).
const MAX_SIDE: usize = 64;
/// The decoded grid over the latent plane.
const MANIFOLD_FILE: &str = "manifold.png";
/// The test posterior means coloured by label.
const MEANS_FILE: &str = "means.png";

/// Half the width of the manifold's z range, in standard deviations.
const Z_RANGE: f32 = 2.5;

/// Which VAE, which images, and where the two plots go.
#[derive(Clone, Debug)]
pub struct LatentMapOptions {
    /// The checkpoint of a `train vae --latent-dim 2` run.
    pub checkpoint: PathBuf,
    /// The dataset whose test split is plotted.
    pub data: DataSpec,
    /// Grid side of the manifold.
    pub side: usize,
    /// Test images in the scatter plot.
    pub limit: usize,
    /// Output directory (manifold.png, means.png).
    pub out: PathBuf,
}

/// The two PNGs written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatentMapReport {
    /// The decoded manifold.
    pub manifold: PathBuf,
    /// The posterior means.
    pub means: PathBuf,
}

/// The VAE's posterior means of (at most `limit` images of) `data`, one `latent` vector each,
/// with the images' labels (0 where the dataset has none).
pub fn posterior_means(
    model: &Autoencoder,
    data: &dyn Dataset,
    batch: usize,
    limit: usize,
) -> Result<(Vec<Vec<f32>>, Vec<u32>)> {
    let _no_grad = autograd::no_grad();
    let gpu = model.params.gpu().clone();
    let total = data.len().min(limit);
    let (mut means, mut labels) = (Vec::with_capacity(total), Vec::with_capacity(total));
    for start in (0..total).step_by(batch.max(1)) {
        let range = start..(start + batch.max(1)).min(total);
        let (x, _) = load_images(data, range.clone(), &gpu)?;
        let stats = model.encode(&x).to_vec()?;
        let per_item = stats.len() / range.len();
        for (item, index) in range.enumerate() {
            // the means are the first half of each item's statistics
            means.push(stats[item * per_item..item * per_item + per_item / 2].to_vec());
            labels.push(data.label(index).unwrap_or(0));
        }
    }
    Ok((means, labels))
}

/// The z of the manifold's `side` x `side` grid: rows from high to low z2, columns from low to
/// high z1, both over ±[`Z_RANGE`].
fn manifold_grid(side: usize) -> Vec<f32> {
    let at = |i: usize| -Z_RANGE + 2.0 * Z_RANGE * i as f32 / (side - 1) as f32;
    (0..side * side)
        .flat_map(|k| [at(k % side), at(side - 1 - k / side)])
        .collect()
}

/// Draws both plots.
pub fn run(gpu: &Gpu, options: &LatentMapOptions) -> Result<LatentMapReport> {
    let side = options.side;
    if !(2..=MAX_SIDE).contains(&side) {
        return Err(Error::setting(
            Setting::Side,
            format!("must be 2 to {MAX_SIDE}, got {side}"),
        ));
    }
    Setting::Limit.require_positive(options.limit as u64)?;
    let path = &options.checkpoint;
    atomic::refuse_file_as_dir(&options.out)?;
    for name in [MANIFOLD_FILE, MEANS_FILE] {
        atomic::refuse_own_input(&options.out.join(name), &[path])?;
    }
    let model = Autoencoder::from_checkpoint(gpu, &Checkpoint::load(path)?)?;
    if !model.config.variational() || model.config.bottleneck != (Bottleneck::Flat { dim: 2 }) {
        return Err(Error::InvalidArgument(format!(
            "{} is not a VAE with a flat latent of dimension 2",
            path.display()
        )));
    }
    let out = &options.out;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let images = {
        let _no_grad = autograd::no_grad();
        let z = Tensor::from_slice(gpu, &[side * side, 2], &manifold_grid(side))?;
        model.decode(&z).to_vec()?
    };
    let manifold = out.join(MANIFOLD_FILE);
    grid::save_grid(&manifold, &images, model.config.image_shape, side)?;
    let test = options.data.open(Split::Test)?;
    let (means, labels) = posterior_means(&model, test.as_ref(), 256, options.limit)?;
    let points: Vec<(f64, f64)> = means.iter().map(|m| (m[0] as f64, m[1] as f64)).collect();
    let scatter = out.join(MEANS_FILE);
    plot::save_scatter(
        &scatter,
        "posterior means of test images (z1, z2)",
        &points,
        &labels,
    )?;
    println!("wrote {} and {}", manifold.display(), scatter.display());
    Ok(LatentMapReport {
        manifold,
        means: scatter,
    })
}
