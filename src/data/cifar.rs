//! CIFAR-10, binary version: `data_batch_1.bin` .. `data_batch_5.bin` (train) and `test_batch.bin`
//! (test); each record is one label byte and 3 x 32 x 32 bytes (R, G, B planes, already CHW).

use std::path::Path;

use super::{Dataset, Split};
use crate::error::{Error, Result};

const RECORD: usize = 1 + 3 * 32 * 32;

/// CIFAR-10 held in memory.
pub struct Cifar10 {
    records: Vec<u8>,
}

impl Cifar10 {
    /// Opens the train or test split from `dir`.
    pub fn open(dir: &Path, split: Split) -> Result<Self> {
        let files: Vec<String> = match split {
            Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            Split::Test => vec!["test_batch.bin".to_string()],
        };
        let mut records = Vec::new();
        for name in files {
            let path = dir.join(&name);
            if !path.is_file() {
                return Err(Error::Dataset(format!(
                    "{} not found: --data must be the directory of the CIFAR-10 binary version (cifar-10-batches-bin)",
                    path.display()
                )));
            }
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            if bytes.is_empty() || bytes.len() % RECORD != 0 {
                return Err(Error::Dataset(format!(
                    "{}: {} bytes is not a whole number of {RECORD}-byte records; the file is truncated or not CIFAR-10",
                    path.display(),
                    bytes.len()
                )));
            }
            if let Some(bad) = bytes.chunks(RECORD).position(|r| r[0] > 9) {
                return Err(Error::Dataset(format!(
                    "{}: record {bad} has label {} (CIFAR-10 labels are 0..9)",
                    path.display(),
                    bytes[bad * RECORD]
                )));
            }
            records.extend_from_slice(&bytes);
        }
        Ok(Self { records })
    }
}

impl Dataset for Cifar10 {
    fn len(&self) -> usize {
        self.records.len() / RECORD
    }

    fn image_shape(&self) -> [usize; 3] {
        [3, 32, 32]
    }

    fn image(&self, index: usize, out: &mut [u8]) {
        out.copy_from_slice(&self.records[index * RECORD + 1..(index + 1) * RECORD]);
    }

    fn label(&self, index: usize) -> Option<u32> {
        Some(self.records[index * RECORD] as u32)
    }

    fn classes(&self) -> Option<usize> {
        Some(10)
    }
}
