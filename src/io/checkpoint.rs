//! Checkpoints as safetensors files: f32 tensors by name (PyTorch `state_dict` names and layouts)
//! plus string metadata, written atomically (temporary file, fsync, rename).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};

/// Named f32 tensors, named i32 tensors (code grids, labels) and string metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// f32 tensors by name: (shape, row-major values).
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// i32 tensors by name: (shape, row-major values).
    pub int_tensors: BTreeMap<String, (Vec<usize>, Vec<i32>)>,
    /// Free-form metadata (model kind, sizes, step, optimizer settings).
    pub metadata: BTreeMap<String, String>,
    /// Where it was read from (for error messages).
    pub path: PathBuf,
}

impl Checkpoint {
    /// Adds a tensor.
    pub fn insert(&mut self, name: &str, shape: &[usize], values: Vec<f32>) {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        self.tensors
            .insert(name.to_string(), (shape.to_vec(), values));
    }

    /// Adds an i32 tensor.
    pub fn insert_i32(&mut self, name: &str, shape: &[usize], values: Vec<i32>) {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        self.int_tensors
            .insert(name.to_string(), (shape.to_vec(), values));
    }

    /// The i32 tensor `name` with its shape.
    pub fn get_i32(&self, name: &str) -> Result<(&[usize], &[i32])> {
        self.int_tensors
            .get(name)
            .map(|(s, v)| (s.as_slice(), v.as_slice()))
            .ok_or_else(|| self.error(format!("has no integer tensor {name:?}")))
    }

    /// Adds a metadata entry.
    pub fn set(&mut self, key: &str, value: impl ToString) {
        self.metadata.insert(key.to_string(), value.to_string());
    }

    fn error(&self, message: String) -> Error {
        Error::Checkpoint {
            path: self.path.display().to_string(),
            message,
        }
    }

    /// The values of tensor `name`, which must have `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32]> {
        match self.tensors.get(name) {
            None => Err(self.error(format!("has no tensor {name:?} (a checkpoint of another architecture?)"))),
            Some((s, _)) if s != shape => Err(self.error(format!(
                "tensor {name:?} has shape {s:?} but this model needs {shape:?} (a checkpoint of another architecture?)"
            ))),
            Some((_, v)) => Ok(v),
        }
    }

    /// Metadata entry `key`.
    pub fn meta(&self, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| self.error(format!("has no metadata entry {key:?}")))
    }

    /// Metadata entry `key` parsed as a number.
    pub fn meta_parse<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        let raw = self.meta(key)?;
        raw.parse()
            .map_err(|_| self.error(format!("metadata {key:?} = {raw:?} is not a valid number")))
    }

    /// Metadata entry `key` holding N comma-separated sizes (an image shape, a grid).
    pub fn dims<const N: usize>(&self, key: &str) -> Result<[usize; N]> {
        let raw = self.meta(key)?;
        let dims: Vec<usize> = raw.split(',').filter_map(|v| v.parse().ok()).collect();
        dims.try_into().map_err(|_| {
            self.error(format!(
                "metadata {key:?} = {raw:?} is not {N} comma-separated sizes"
            ))
        })
    }

    /// Stores `dims` as metadata entry `key`, comma-separated (read back by [`Checkpoint::dims`]).
    pub fn set_dims(&mut self, key: &str, dims: &[usize]) {
        let joined: Vec<String> = dims.iter().map(ToString::to_string).collect();
        self.set(key, joined.join(","));
    }

    /// Fails with `message` unless the metadata entry `format` is `format`.
    pub fn expect_format(&self, format: &str, message: &str) -> Result<()> {
        if self.meta("format").ok() == Some(format) {
            Ok(())
        } else {
            Err(self.error(message.to_string()))
        }
    }

    /// Writes the file atomically: a crash leaves either the old or the new checkpoint.
    pub fn save(&self, path: &Path) -> Result<()> {
        let floats = self.tensors.iter().map(|(name, (shape, values))| {
            (
                name,
                Dtype::F32,
                shape,
                bytemuck::cast_slice::<f32, u8>(values),
            )
        });
        let ints = self.int_tensors.iter().map(|(name, (shape, values))| {
            (
                name,
                Dtype::I32,
                shape,
                bytemuck::cast_slice::<i32, u8>(values),
            )
        });
        let views = floats
            .chain(ints)
            .map(|(name, dtype, shape, data)| {
                TensorView::new(dtype, shape.clone(), data)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| Error::InvalidArgument(format!("tensor {name}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let metadata: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        let encoded = safetensors::serialize(views, Some(metadata))
            .map_err(|e| Error::InvalidArgument(format!("cannot encode checkpoint: {e}")))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let tmp = path.with_extension("safetensors.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        file.write_all(&encoded).map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// Reads a checkpoint; a missing, truncated or non-safetensors file is an error that says so.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |message: String| Error::Checkpoint {
            path: path.display().to_string(),
            message,
        };
        let tensors = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("unreadable header ({e})")))?;
        let mut out = Checkpoint {
            path: path.to_path_buf(),
            ..Default::default()
        };
        if let Some(meta) = header.metadata() {
            out.metadata = meta.clone().into_iter().collect();
        }
        for name in tensors.names() {
            let view = tensors
                .tensor(name)
                .map_err(|e| bad(format!("tensor {name}: {e}")))?;
            let shape = view.shape().to_vec();
            match view.dtype() {
                Dtype::F32 => {
                    out.tensors.insert(
                        name.to_string(),
                        (shape, bytemuck::pod_collect_to_vec(view.data())),
                    );
                }
                Dtype::I32 => {
                    out.int_tensors.insert(
                        name.to_string(),
                        (shape, bytemuck::pod_collect_to_vec(view.data())),
                    );
                }
                other => {
                    return Err(bad(format!(
                        "tensor {name} is {other:?}; vqgpu reads f32 and i32"
                    )))
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_of_both_types_and_metadata_round_trip_through_a_file() {
        let mut ck = Checkpoint::default();
        ck.insert(
            "w",
            &[2, 3],
            vec![1.0, -2.5, 3.0, 0.0, f32::MIN_POSITIVE, 7.0],
        );
        ck.insert_i32("train.codes", &[1, 2, 2], vec![0, 511, 7, -1]);
        ck.set("step", 42);
        let path =
            std::env::temp_dir().join(format!("vqgpu-ck-{}.safetensors", std::process::id()));
        ck.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(
            (
                back.tensors.clone(),
                back.int_tensors.clone(),
                back.metadata.clone()
            ),
            (ck.tensors, ck.int_tensors, ck.metadata)
        );
        assert_eq!(back.get_i32("train.codes").unwrap().0, &[1, 2, 2]);
        assert_eq!(back.meta_parse::<u64>("step").unwrap(), 42);
        assert!(back.get("w", &[3, 2]).is_err(), "a wrong shape is an error");
        assert!(
            !path.with_extension("safetensors.tmp").exists(),
            "the temporary file was renamed"
        );
    }
}
