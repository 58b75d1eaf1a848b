//! A directory of PNG / JPEG images (searched recursively), centre-cropped to a square and resized
//! to `size` x `size` RGB. Every tenth file in name order is held out as the test split.

use std::path::{Path, PathBuf};

use super::{Dataset, Split};
use crate::error::{Error, Result};

/// Decoded images of one split, held in memory.
pub struct Folder {
    images: Vec<u8>,
    size: usize,
}

fn image_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            image_files(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        {
            out.push(path);
        }
    }
    Ok(())
}

impl Folder {
    /// Loads the split of `dir`'s images at `size` x `size`.
    pub fn open(dir: &Path, split: Split, size: usize) -> Result<Self> {
        if size == 0 || !size.is_multiple_of(4) {
            return Err(Error::InvalidArgument(format!(
                "--image-size must be a positive multiple of 4, got {size}"
            )));
        }
        let mut files = Vec::new();
        image_files(dir, &mut files)?;
        files.sort();
        let chosen: Vec<&PathBuf> = files
            .iter()
            .enumerate()
            .filter(|(i, _)| (i % 10 == 9) == (split == Split::Test))
            .map(|(_, p)| p)
            .collect();
        if chosen.is_empty() {
            return Err(Error::Dataset(format!(
                "{} holds {} PNG/JPEG files, too few for a {split:?} split",
                dir.display(),
                files.len()
            )));
        }
        let mut images = Vec::with_capacity(chosen.len() * 3 * size * size);
        for path in chosen {
            let img = image::open(path)
                .map_err(|e| Error::Dataset(format!("{}: {e}", path.display())))?;
            let side = img.width().min(img.height());
            let square = img.crop_imm(
                (img.width() - side) / 2,
                (img.height() - side) / 2,
                side,
                side,
            );
            let rgb = square
                .resize_exact(
                    size as u32,
                    size as u32,
                    image::imageops::FilterType::Triangle,
                )
                .to_rgb8();
            for c in 0..3 {
                images.extend(rgb.pixels().map(|p| p[c]));
            }
        }
        Ok(Self { images, size })
    }
}

impl Dataset for Folder {
    fn len(&self) -> usize {
        self.images.len() / (3 * self.size * self.size)
    }

    fn image_shape(&self) -> [usize; 3] {
        [3, self.size, self.size]
    }

    fn image(&self, index: usize, out: &mut [u8]) {
        let n = 3 * self.size * self.size;
        out.copy_from_slice(&self.images[index * n..(index + 1) * n]);
    }

    fn label(&self, _index: usize) -> Option<u32> {
        None
    }

    fn classes(&self) -> Option<usize> {
        None
    }
}
