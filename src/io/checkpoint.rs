//! Checkpoints as safetensors files: f32 tensors by name (PyTorch `state_dict` names and layouts)
//! plus string metadata, written atomically (temporary file, fsync, rename).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};
use crate::io::atomic;

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

    /// An error about this checkpoint: its path and `message`.
    pub fn error(&self, message: String) -> Error {
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

    /// [`Checkpoint::meta_parse`] of `key`, or `default` where the checkpoint has no such entry
    /// (one written before the entry existed).
    pub fn meta_parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T> {
        if self.metadata.contains_key(key) {
            self.meta_parse(key)
        } else {
            Ok(default)
        }
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

    /// Every tensor's name and bytes.
    fn tensor_bytes(&self) -> impl Iterator<Item = (&String, &[u8])> {
        let floats = self
            .tensors
            .iter()
            .map(|(n, (_, v))| (n, bytemuck::cast_slice::<f32, u8>(v)));
        let ints = self
            .int_tensors
            .iter()
            .map(|(n, (_, v))| (n, bytemuck::cast_slice::<i32, u8>(v)));
        floats.chain(ints)
    }

    /// The first f32 tensor holding a value that is not finite, and that value.
    pub fn first_non_finite(&self) -> Option<(&str, f32)> {
        self.tensors.iter().find_map(|(name, (_, values))| {
            values
                .iter()
                .find(|v| !v.is_finite())
                .map(|&v| (name.as_str(), v))
        })
    }

    /// Writes the file atomically (see [`atomic`]): a crash leaves either the old or the new
    /// checkpoint. Every tensor's CRC32 goes into the metadata (`crc32.NAME`), and the header is
    /// written with its keys sorted, so that the same contents give the same bytes.
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
        let mut metadata: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        for (name, bytes) in self.tensor_bytes() {
            metadata.insert(
                format!("{CHECKSUM_PREFIX}{name}"),
                format!("{:08x}", crc32fast::hash(bytes)),
            );
        }
        let encoded = safetensors::serialize(views, Some(metadata))
            .map_err(|e| Error::InvalidArgument(format!("cannot encode checkpoint: {e}")))?;
        atomic::write(path, &canonical_header(encoded)?)
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
        let checksums: BTreeMap<String, String> = out
            .metadata
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(CHECKSUM_PREFIX)?.to_string(), v.clone())))
            .collect();
        out.metadata.retain(|k, _| !k.starts_with(CHECKSUM_PREFIX));
        for name in tensors.names() {
            let view = tensors
                .tensor(name)
                .map_err(|e| bad(format!("tensor {name}: {e}")))?;
            // files of earlier versions carry no checksums; one that has some must have all
            if !checksums.is_empty() {
                let want = checksums.get(name).ok_or_else(|| {
                    bad(format!(
                        "tensor {name} has no checksum: the file was altered"
                    ))
                })?;
                let got = format!("{:08x}", crc32fast::hash(view.data()));
                if *want != got {
                    return Err(bad(format!(
                        "tensor {name} is damaged: its bytes have checksum {got}, the file records {want}"
                    )));
                }
            }
            let shape = view.shape().to_vec();
            match view.dtype() {
                Dtype::F32 => {
                    let values: Vec<f32> = bytemuck::pod_collect_to_vec(view.data());
                    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                        return Err(bad(format!(
                            "tensor {name} holds {} at element {i}: the model it saves had diverged",
                            values[i]
                        )));
                    }
                    out.tensors.insert(name.to_string(), (shape, values));
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

/// Metadata key prefix of a tensor's checksum.
const CHECKSUM_PREFIX: &str = "crc32.";

/// `encoded` (a safetensors file) with its JSON header's keys, and those of its metadata, in
/// sorted order: the header as written depends on hash-map order, which changes between runs.
fn canonical_header(mut encoded: Vec<u8>) -> Result<Vec<u8>> {
    let broken = |what: &str| Error::InvalidArgument(format!("cannot encode checkpoint: {what}"));
    let len_bytes: [u8; 8] = encoded
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| broken("no header"))?;
    let len = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|_| broken("header size"))?;
    let end = 8usize
        .checked_add(len)
        .filter(|&e| e <= encoded.len())
        .ok_or_else(|| broken("header size"))?;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&encoded[8..end]).map_err(|e| broken(&e.to_string()))?;
    let mut sorted = serde_json::Map::new();
    for (key, value) in header {
        let value = match value {
            serde_json::Value::Object(m) => {
                let inner: BTreeMap<String, serde_json::Value> = m.into_iter().collect();
                serde_json::Value::Object(inner.into_iter().collect())
            }
            other => other,
        };
        sorted.insert(key, value);
    }
    let text = serde_json::to_vec(&serde_json::Value::Object(sorted))
        .map_err(|e| broken(&e.to_string()))?;
    if text.len() > len {
        return Err(broken("sorted header is longer"));
    }
    encoded[8..8 + text.len()].copy_from_slice(&text);
    encoded[8 + text.len()..end].fill(b' ');
    Ok(encoded)
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
            !atomic::temporary_path(&path).exists(),
            "the temporary file was renamed"
        );
    }

    /// A checkpoint with metadata and tensors enough for hash-map order to vary.
    fn sample_checkpoint() -> Checkpoint {
        let mut ck = Checkpoint::default();
        for i in 0..20 {
            ck.insert(&format!("t{i}"), &[3], vec![i as f32, 0.5, -1.0]);
            ck.set(&format!("key{i}"), i);
        }
        ck.insert_i32("codes", &[2], vec![3, 4]);
        ck
    }

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "vqgpu-ck-{name}-{}.safetensors",
            std::process::id()
        ))
    }

    #[test]
    fn the_same_contents_give_the_same_bytes() {
        let path = scratch("same");
        let ck = sample_checkpoint();
        ck.save(&path).unwrap();
        let first = std::fs::read(&path).unwrap();
        for _ in 0..5 {
            ck.save(&path).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), first);
        }
        // the header is valid JSON with sorted keys, and the file still loads
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back.tensors, ck.tensors);
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn a_flipped_byte_in_any_tensor_is_named_on_load() {
        let path = scratch("flip");
        let ck = sample_checkpoint();
        ck.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 8;
        // every byte of the data section, one at a time (flipped to a finite value: the low
        // mantissa bit)
        for at in header..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            std::fs::write(&path, &damaged).unwrap();
            let err = Checkpoint::load(&path).unwrap_err().to_string();
            assert!(err.contains("is damaged"), "byte {at}: {err}");
        }
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn non_finite_values_are_refused_on_load() {
        let path = scratch("nan");
        let mut ck = sample_checkpoint();
        ck.insert("w", &[2], vec![1.0, f32::NAN]);
        assert_eq!(ck.first_non_finite().map(|(n, _)| n), Some("w"));
        ck.save(&path).unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(err.contains("tensor w holds NaN"), "{err}");
        std::fs::remove_file(&path).ok();
    }
}
