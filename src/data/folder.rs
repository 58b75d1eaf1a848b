//! A directory of PNG / JPEG images (searched recursively), centre-cropped to a square and resized
//! to `size` x `size` RGB. Every tenth file in name order is held out as the test split.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{Dataset, Split};
use crate::error::{Error, Result};

/// Decoded images of one split, held in memory.
pub struct Folder {
    images: Vec<u8>,
    size: usize,
}

/// The PNG / JPEG files under `dir`, each once (by its real path, so symbolic links to files
/// already listed add nothing), in sorted order; every directory is entered once, so a symbolic
/// link loop ends.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = BTreeSet::new();
    let mut visited = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let real = dir.canonicalize().map_err(|e| Error::io(&dir, e))?;
        if !visited.insert(real) {
            continue;
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
            {
                files.insert(path.canonicalize().map_err(|e| Error::io(&path, e))?);
            }
        }
    }
    Ok(files.into_iter().collect())
}

/// The most bytes a folder split may decode to (it is held in memory).
const MAX_SPLIT_BYTES: usize = 16 << 30;

/// Refuses a JPEG without an end-of-image marker after its last scan: a file cut short, which
/// decoders fill with grey rather than refuse. (Inside a scan 0xFF is always followed by 0x00 or a
/// restart marker, so the markers found are real.)
fn check_jpeg_complete(path: &Path, bytes: &[u8]) -> Result<()> {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let end = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    match (last_scan, end) {
        (Some(scan), Some(end)) if end > scan => Ok(()),
        _ => Err(Error::Dataset(format!(
            "{}: the JPEG data ends before its end-of-image marker; the file is truncated or damaged",
            path.display()
        ))),
    }
}

/// Decodes one image file, refusing damaged and truncated ones with an error naming it.
fn decode(path: &Path) -> Result<image::DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let format = image::guess_format(&bytes)
        .map_err(|e| Error::Dataset(format!("{}: {e}", path.display())))?;
    if format == image::ImageFormat::Jpeg {
        check_jpeg_complete(path, &bytes)?;
    }
    image::load_from_memory_with_format(&bytes, format)
        .map_err(|e| Error::Dataset(format!("{}: {e}", path.display())))
}

impl Folder {
    /// Loads the split of `dir`'s images at `size` x `size`.
    pub fn open(dir: &Path, split: Split, size: usize) -> Result<Self> {
        if size == 0 || !size.is_multiple_of(4) {
            return Err(Error::InvalidArgument(format!(
                "--image-size must be a positive multiple of 4, got {size}"
            )));
        }
        let files = image_files(dir)?;
        let chosen: Vec<&PathBuf> = files
            .iter()
            .enumerate()
            .filter(|(i, _)| (i % 10 == 9) == (split == Split::Test))
            .map(|(_, p)| p)
            .collect();
        if chosen.is_empty() {
            return Err(Error::Dataset(format!(
                "{} holds {} PNG/JPEG files, too few for a {split:?} split (every tenth file is a test image: a folder needs 10 or more)",
                dir.display(),
                files.len()
            )));
        }
        let bytes = [chosen.len(), 3, size]
            .iter()
            .try_fold(size, |acc, &d| acc.checked_mul(d))
            .filter(|&b| b <= MAX_SPLIT_BYTES)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{} images of {size}x{size} would take more than {} GiB of memory: use a smaller --image-size or fewer images",
                    chosen.len(),
                    MAX_SPLIT_BYTES >> 30
                ))
            })?;
        let mut images = Vec::with_capacity(bytes);
        for path in chosen {
            let img = decode(path)?;
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
