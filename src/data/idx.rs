//! MNIST / Fashion-MNIST in the IDX format (`train-images-idx3-ubyte[.gz]` and friends), gzipped or
//! raw. The 28x28 images are zero-padded to 32x32 as in the reference (so the VQ-VAE gives 8x8 codes).

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::{Dataset, Split};
use crate::error::{Error, Result};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
/// Zero border added on each side.
const PAD: usize = 2;

/// An IDX image set with its labels, held in memory.
pub struct Idx {
    images: Vec<u8>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
}

/// Finds `stem` or `stem.gz` in `dir` and returns its decompressed bytes.
fn read_maybe_gz(dir: &Path, stem: &str) -> Result<Vec<u8>> {
    let candidates = [dir.join(format!("{stem}.gz")), dir.join(stem)];
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return Err(Error::Dataset(format!(
            "{} not found (looked for {stem}.gz and {stem}); on Debian/Ubuntu `apt-get install dataset-fashion-mnist` \
             installs Fashion-MNIST in /usr/share/datasets/fashion-mnist, or pass --data DIR",
            dir.join(stem).display()
        )));
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    // at most MAX_FILE_BYTES (+ 1 to tell a file of exactly that size from a larger one)
    let read = if path.extension().is_some_and(|e| e == "gz") {
        GzDecoder::new(file)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
    } else {
        std::io::BufReader::new(file)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
    };
    read.map_err(|e| {
        Error::Dataset(format!(
            "{}: cannot read ({e}); is the file truncated or not gzip?",
            path.display()
        ))
    })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::Dataset(format!(
            "{}: more than {} GiB once decompressed; not an IDX file vqgpu reads",
            path.display(),
            MAX_FILE_BYTES >> 30
        )));
    }
    Ok(bytes)
}

/// The largest IDX file read (decompressed): bounds what a damaged or hostile gzip stream can make
/// vqgpu allocate.
const MAX_FILE_BYTES: u64 = 4 << 30;

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks the magic number and the length of an IDX file; returns its dimensions.
fn parse_header(bytes: &[u8], magic: u32, dims: usize, name: &str) -> Result<Vec<usize>> {
    let header = 4 + 4 * dims;
    if bytes.len() < header {
        return Err(Error::Dataset(format!(
            "{name}: {} bytes is shorter than its header; the file is truncated",
            bytes.len()
        )));
    }
    let found = be_u32(bytes, 0);
    if found != magic {
        return Err(Error::Dataset(format!("{name}: magic number {found:#010x}, expected {magic:#010x}; not an IDX file of this kind")));
    }
    let sizes: Vec<usize> = (0..dims)
        .map(|i| be_u32(bytes, 4 + 4 * i) as usize)
        .collect();
    let expected = sizes
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|payload| payload.checked_add(header))
        .ok_or_else(|| {
            Error::Dataset(format!(
                "{name}: its header announces dimensions {sizes:?}, more bytes than can exist; the file is damaged"
            ))
        })?;
    if bytes.len() < expected {
        return Err(Error::Dataset(format!(
            "{name}: {} bytes but its header announces {expected}; the file is truncated",
            bytes.len()
        )));
    }
    Ok(sizes)
}

impl Idx {
    /// Opens the train or test split from `dir`.
    pub fn open(dir: &Path, split: Split) -> Result<Self> {
        let prefix = match split {
            Split::Train => "train",
            Split::Test => "t10k",
        };
        let image_name = format!("{prefix}-images-idx3-ubyte");
        let label_name = format!("{prefix}-labels-idx1-ubyte");
        let image_bytes = read_maybe_gz(dir, &image_name)?;
        let dims = parse_header(&image_bytes, IMAGES_MAGIC, 3, &image_name)?;
        let label_bytes = read_maybe_gz(dir, &label_name)?;
        let label_dims = parse_header(&label_bytes, LABELS_MAGIC, 1, &label_name)?;
        let (n, rows, cols) = (dims[0], dims[1], dims[2]);
        if label_dims[0] != n {
            return Err(Error::Dataset(format!(
                "{image_name} has {n} images but {label_name} has {} labels",
                label_dims[0]
            )));
        }
        if n == 0 || rows == 0 || cols == 0 {
            return Err(Error::Dataset(format!("{image_name} holds no images")));
        }
        Ok(Self {
            images: image_bytes[16..16 + n * rows * cols].to_vec(),
            labels: label_bytes[8..8 + n].to_vec(),
            rows,
            cols,
        })
    }

    /// The default directory of Debian's `dataset-fashion-mnist` package.
    pub fn default_dir() -> PathBuf {
        PathBuf::from("/usr/share/datasets/fashion-mnist")
    }
}

impl Dataset for Idx {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn image_shape(&self) -> [usize; 3] {
        [1, self.rows + 2 * PAD, self.cols + 2 * PAD]
    }

    fn image(&self, index: usize, out: &mut [u8]) {
        let width = self.cols + 2 * PAD;
        out.fill(0);
        let src = &self.images[index * self.rows * self.cols..(index + 1) * self.rows * self.cols];
        for y in 0..self.rows {
            let row = &src[y * self.cols..(y + 1) * self.cols];
            out[(y + PAD) * width + PAD..(y + PAD) * width + PAD + self.cols].copy_from_slice(row);
        }
    }

    fn label(&self, index: usize) -> Option<u32> {
        Some(self.labels[index] as u32)
    }

    fn classes(&self) -> Option<usize> {
        Some(10)
    }
}
