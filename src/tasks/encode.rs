//! `encode`: the code grids of a dataset's train and test splits under a VQ-VAE, the prior's data.

use std::path::PathBuf;

use crate::data::{CodeFile, DataSpec, Dataset, Split};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::atomic;
use crate::models::vqvae::VqVae;

use super::for_each_batch;
use super::progress::Progress;

/// Which model encodes which images into which file.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// The VQ-VAE checkpoint.
    pub checkpoint: PathBuf,
    /// The dataset (both splits are encoded).
    pub data: DataSpec,
    /// Images per forward pass.
    pub batch: usize,
    /// Encode at most this many images of each split.
    pub limit: usize,
    /// The code file written.
    pub out: PathBuf,
}

/// What `encode` wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeReport {
    /// The code file.
    pub out: PathBuf,
    /// Whether it holds labels (the dataset has classes).
    pub labelled: bool,
}

/// Adds the code grids of the first `limit` images of `data` to `file` as split `split`:
/// [N, H/4, W/4] codes and, where the dataset has labels, one label per grid.
pub fn encode_into(
    file: &mut CodeFile,
    split: &str,
    model: &mut VqVae,
    data: &dyn Dataset,
    batch: usize,
    limit: usize,
) -> Result<()> {
    let n = data.len().min(limit);
    let mut codes: Vec<i32> = Vec::with_capacity(n * 64);
    let mut grid = [0usize; 2];
    let progress = Progress::new(0, n as u64);
    let mut done = 0;
    for_each_batch(model, data, batch, limit, &mut |_, _, levels| {
        let c = &levels[0];
        grid = [c.dim(1), c.dim(2)];
        codes.extend(c.to_vec()?.iter().map(|&c| c as i32));
        done += c.dim(0);
        progress.advance(done as u64);
        Ok(())
    })?;
    drop(progress);
    let labels = data.classes().map(|classes| {
        let labels = (0..n).map(|i| data.label(i).unwrap_or(0) as i32).collect();
        (labels, classes)
    });
    file.add_split(split, codes, [n, grid[0], grid[1]], labels);
    Ok(())
}

/// Encodes both splits and writes the code file.
pub fn run(gpu: &Gpu, options: &EncodeOptions) -> Result<EncodeReport> {
    atomic::refuse_own_input(&options.out, &[&options.checkpoint])?;
    if options.limit == 0 {
        return Err(Error::InvalidArgument(
            "--limit must be at least 1: a code file needs code grids".into(),
        ));
    }
    let mut model = VqVae::load(gpu, &options.checkpoint)?;
    let mut file = CodeFile::new(
        model.config.codebook_size,
        &options.data.dataset,
        &options.checkpoint,
    );
    for (name, split) in [("train", Split::Train), ("test", Split::Test)] {
        let images = options.data.open(split)?;
        eprintln!("encoding {} {name} images", images.len().min(options.limit));
        encode_into(
            &mut file,
            name,
            &mut model,
            images.as_ref(),
            options.batch,
            options.limit,
        )?;
    }
    file.save(&options.out)?;
    println!("wrote {}", options.out.display());
    Ok(EncodeReport {
        out: options.out.clone(),
        labelled: file.has_labels(),
    })
}
