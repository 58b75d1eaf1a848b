//! Code grids written by `vqgpu encode`: `{split}.codes` [N, H, W] (a VQ-VAE-2's bottom grids), for
//! a VQ-VAE-2 also `{split}.top_codes` [N, H/2, W/2], and optional `{split}.labels` [N] (all i32),
//! with the codebook size and the number of classes in the metadata. The priors' training data.

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::checkpoint::Checkpoint;

/// Format tag of code files.
pub const CODES_FORMAT: &str = "vqgpu.codes.1";

/// One split of a code file, held in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct CodeGrids {
    /// Codes of every grid, row-major [N, H, W], as f32 holding exact integers (the model's input).
    pub codes: Vec<f32>,
    /// Number of grids N.
    pub len: usize,
    /// Grid (height, width).
    pub grid: [usize; 2],
    /// Codebook size K.
    pub codebook_size: usize,
    /// The class of each grid, where the images had labels.
    pub labels: Option<Vec<u32>>,
    /// Number of classes of the labels (0 without labels).
    pub classes: usize,
    /// The grids a conditioned prior is conditioned on, one per grid (a VQ-VAE-2's top grids for
    /// a prior over its bottom grids); see [`CodeGrids::conditioned_on_top`].
    pub condition: Option<Box<CodeGrids>>,
}

/// Which grids of a code file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CodeLevel {
    /// The VQ-VAE's grids, or a VQ-VAE-2's bottom grids.
    #[default]
    Bottom,
    /// A VQ-VAE-2's top grids.
    Top,
}

impl CodeLevel {
    /// The name of this level's tensor of split `split`.
    fn key(self, split: &str) -> String {
        match self {
            CodeLevel::Bottom => format!("{split}.codes"),
            CodeLevel::Top => format!("{split}.top_codes"),
        }
    }
}

impl CodeGrids {
    /// Reads split `split` ("train" or "test") of the code file `path`, checking every code and
    /// label against the sizes the file declares.
    pub fn load(path: &Path, split: &str) -> Result<Self> {
        let ck = Checkpoint::load(path)?;
        Self::from_checkpoint(&ck, split)
    }

    /// Split `split` of a loaded code file (its only grids, or a VQ-VAE-2's bottom grids).
    pub fn from_checkpoint(ck: &Checkpoint, split: &str) -> Result<Self> {
        Self::of_level(ck, split, CodeLevel::Bottom)
    }

    /// The `level` grids of split `split` of a loaded code file.
    pub fn of_level(ck: &Checkpoint, split: &str, level: CodeLevel) -> Result<Self> {
        let bad = |message: String| Error::Checkpoint {
            path: ck.path.display().to_string(),
            message,
        };
        ck.expect_format(
            CODES_FORMAT,
            "is not a code file written by `vqgpu encode` (wrong format tag)",
        )?;
        let codebook_size: usize = ck.meta_parse("codebook_size")?;
        if level == CodeLevel::Top && !ck.int_tensors.contains_key(&level.key(split)) {
            return Err(bad(
                "has no top codes: it was encoded by a one-level VQ-VAE (top codes come from a VQ-VAE-2)"
                    .into(),
            ));
        }
        let key = level.key(split);
        let (shape, codes) = ck.get_i32(&key)?;
        let &[len, h, w] = shape else {
            return Err(bad(format!("{key} must be [N, H, W], got {shape:?}")));
        };
        if len == 0 || h == 0 || w == 0 {
            return Err(bad(format!("{key} is empty ({shape:?})")));
        }
        if let Some(c) = codes
            .iter()
            .find(|&&c| c < 0 || c as usize >= codebook_size)
        {
            return Err(bad(format!(
                "{key} holds code {c}, outside the codebook of {codebook_size}"
            )));
        }
        let classes: usize = ck.meta_parse("classes").unwrap_or(0);
        let labels = match ck.get_i32(&format!("{split}.labels")) {
            Err(_) => None,
            Ok((shape, labels)) => {
                if shape != [len] || labels.iter().any(|&l| l < 0 || l as usize >= classes) {
                    return Err(bad(format!(
                        "{split}.labels must be [{len}] classes below {classes}, got {shape:?}"
                    )));
                }
                Some(labels.iter().map(|&l| l as u32).collect())
            }
        };
        Ok(Self {
            codes: codes.iter().map(|&c| c as f32).collect(),
            len,
            grid: [h, w],
            codebook_size,
            classes: if labels.is_some() { classes } else { 0 },
            labels,
            condition: None,
        })
    }

    /// These (bottom) grids with the same file's top grids of split `split` as their condition:
    /// one top grid per bottom grid, of half the side.
    pub fn conditioned_on_top(self, ck: &Checkpoint, split: &str) -> Result<Self> {
        let top = Self::of_level(ck, split, CodeLevel::Top)?;
        let half = self.grid.map(|side| side / 2);
        if top.len != self.len || top.grid != half || self.grid.iter().any(|s| s % 2 != 0) {
            return Err(ck.error(format!(
                "its {} top grids of {:?} do not condition its {} bottom grids of {:?} (one per grid, half the side)",
                top.len, top.grid, self.len, self.grid
            )));
        }
        Ok(Self {
            condition: Some(Box::new(top)),
            ..self
        })
    }

    /// Positions per grid (H x W).
    pub fn positions(&self) -> usize {
        self.grid[0] * self.grid[1]
    }

    /// The codes of grid `index`.
    pub fn grid_codes(&self, index: usize) -> &[f32] {
        let n = self.positions();
        &self.codes[index * n..(index + 1) * n]
    }

    /// Entropy in nats of the code histogram over every position of every grid: the NLL per code
    /// of the best model that ignores position and context (the unigram baseline).
    pub fn unigram_entropy(&self) -> f64 {
        let mut counts = vec![0u64; self.codebook_size];
        for &c in &self.codes {
            counts[c as usize] += 1;
        }
        let n = self.codes.len() as f64;
        counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / n;
                -p * p.ln()
            })
            .sum::<f64>()
            // one code everywhere sums to -0.0: print it as 0
            .abs()
    }
}

/// A code file being written: the metadata first, then one split at a time.
pub struct CodeFile {
    file: Checkpoint,
}

impl CodeFile {
    /// A file of codes from a codebook of `codebook_size`, encoded from `dataset` by the VQ-VAE
    /// saved at `vqvae`.
    pub fn new(codebook_size: usize, dataset: &str, vqvae: &Path) -> Self {
        let mut file = Checkpoint::default();
        file.set("format", CODES_FORMAT);
        file.set("codebook_size", codebook_size);
        file.set("dataset", dataset);
        file.set("vqvae_checkpoint", vqvae.display());
        Self { file }
    }

    /// Adds split `split`: `codes` of `len` grids of `grid` codes, and where the images had
    /// labels, one per grid with the number of classes.
    pub fn add_split(
        &mut self,
        split: &str,
        codes: Vec<i32>,
        [len, h, w]: [usize; 3],
        labels: Option<(Vec<i32>, usize)>,
    ) {
        self.file
            .insert_i32(&format!("{split}.codes"), &[len, h, w], codes);
        if let Some((labels, classes)) = labels {
            self.file
                .insert_i32(&format!("{split}.labels"), &[len], labels);
            self.file.set("classes", classes);
        }
    }

    /// Adds the top grids of split `split` encoded by a VQ-VAE-2 (its bottom grids go in with
    /// [`CodeFile::add_split`]).
    pub fn add_top_codes(&mut self, split: &str, codes: Vec<i32>, shape: [usize; 3]) {
        self.file
            .insert_i32(&CodeLevel::Top.key(split), &shape, codes);
        self.file.set("levels", 2);
    }

    /// Whether the splits carry labels.
    pub fn has_labels(&self) -> bool {
        self.file.metadata.contains_key("classes")
    }

    /// The file's contents.
    pub fn contents(&self) -> &Checkpoint {
        &self.file
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.file.save(path)
    }
}
