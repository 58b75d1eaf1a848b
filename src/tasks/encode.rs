//! `encode`: the code grids of a dataset's train and test splits under a VQ-VAE (both levels'
//! under a VQ-VAE-2), the priors' data.

use std::path::{Path, PathBuf};

use crate::data::{CodeFile, DataSpec, Dataset, Split};
use crate::error::{Error, Result, Setting};
use crate::gpu::Gpu;
use crate::io::atomic;
use crate::models::{load_code_model, CodeModel};

use super::for_each_batch;

/// Which model encodes which images into which file.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// The VQ-VAE or VQ-VAE-2 checkpoint.
    pub checkpoint: PathBuf,
    /// The dataset (both splits are encoded).
    pub data: DataSpec,
    /// Images per forward pass.
    pub batch: usize,
    /// Encode at most this many images of each split.
    pub limit: usize,
    /// The code file written.
    pub out: PathBuf,
    /// Replace `out` if it exists (refused otherwise).
    pub overwrite: bool,
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
/// [N, H/4, W/4] codes (and a VQ-VAE-2's [N, H/8, W/8] top codes) and, where the dataset has
/// labels, one label per grid.
pub fn encode_into(
    file: &mut CodeFile,
    split: &str,
    model: &mut dyn CodeModel,
    data: &dyn Dataset,
    batch: usize,
    limit: usize,
) -> Result<()> {
    let n = data.len().min(limit);
    // per level, top first: the codes and the grid
    let mut levels: Vec<(Vec<i32>, [usize; 2])> = Vec::new();
    for_each_batch(model, data, batch, limit, &mut |_, _, grids| {
        levels.resize_with(grids.len(), Default::default);
        for ((codes, grid), c) in levels.iter_mut().zip(grids) {
            *grid = [c.dim(1), c.dim(2)];
            codes.extend(c.to_vec()?.iter().map(|&c| c as i32));
        }
        Ok(())
    })?;
    let labels = data.classes().map(|classes| {
        let labels = (0..n).map(|i| data.label(i).unwrap_or(0) as i32).collect();
        (labels, classes)
    });
    let (bottom, [h, w]) = levels.pop().unwrap_or_default();
    file.add_split(split, bottom, [n, h, w], labels);
    if let Some((top, [h, w])) = levels.pop() {
        file.add_top_codes(split, top, [n, h, w]);
    }
    Ok(())
}

/// Refuses to encode no images: a code file needs code grids.
pub(crate) fn check_limit(limit: usize) -> Result<()> {
    if limit == 0 {
        return Err(Error::setting(
            Setting::Limit,
            "must be at least 1: a code file needs code grids",
        ));
    }
    Ok(())
}

/// Refuses to replace an existing code file unless `overwrite`: a prior may be training on it, and
/// nothing in its run would notice the new codes.
pub(crate) fn check_out(out: &Path, overwrite: bool) -> Result<()> {
    atomic::check_output_file(out)?;
    if out.exists() && !overwrite {
        return Err(Error::InvalidArgument(format!(
            "{} already exists: choose another --out, or pass --overwrite to replace it",
            out.display()
        )));
    }
    Ok(())
}

/// Encodes both splits and writes the code file.
pub fn run(gpu: &Gpu, options: &EncodeOptions) -> Result<EncodeReport> {
    atomic::refuse_own_input(&options.out, &[&options.checkpoint])?;
    check_out(&options.out, options.overwrite)?;
    check_limit(options.limit)?;
    let splits = [
        options.data.open(Split::Train)?,
        options.data.open(Split::Test)?,
    ];
    let mut model = load_code_model(gpu, &options.checkpoint, splits[0].image_shape())?;
    let mut file = CodeFile::new(
        model.codebook_sizes()[0],
        &options.data.describe(),
        &options.checkpoint,
    );
    for (name, images) in ["train", "test"].into_iter().zip(splits) {
        eprintln!("encoding {} {name} images", images.len().min(options.limit));
        encode_into(
            &mut file,
            name,
            model.as_mut(),
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
