//! The readers of untrusted files (checkpoints, code files, IDX, CIFAR-10) under random damage:
//! valid files with bytes flipped, cut short, grown, or with hostile sizes in their headers, and
//! plain random bytes. Every outcome must be a loaded file or an error; never a panic, an abort
//! or a runaway allocation. proptest's 256 cases per reader keep it within CI's time; run
//! `PROPTEST_CASES=20000 cargo test --release --test fuzz_readers` for a longer search. Needs no GPU.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use vqgpu::data::{Cifar10, CodeFile, CodeGrids, Idx, Split};
use vqgpu::io::checkpoint::Checkpoint;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vqgpu-fuzz-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small valid checkpoint and code file, as bytes.
fn valid_files(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut ck = Checkpoint::default();
    ck.insert("encoder.0.weight", &[2, 3], vec![0.5; 6]);
    ck.insert("encoder.0.bias", &[2], vec![-1.0, 2.0]);
    ck.set("format", "vqgpu.vqvae.1");
    ck.set("hidden", 2);
    let ck_path = dir.join("valid.safetensors");
    ck.save(&ck_path).unwrap();
    let mut codes = CodeFile::new(4, "shapes", Path::new("vqvae.safetensors"));
    codes.add_split(
        "train",
        vec![0, 1, 2, 3, 3, 2, 1, 0],
        [2, 2, 2],
        Some((vec![0, 1], 2)),
    );
    let codes_path = dir.join("codes.safetensors");
    codes.save(&codes_path).unwrap();
    (
        std::fs::read(&ck_path).unwrap(),
        std::fs::read(&codes_path).unwrap(),
    )
}

/// What damage to do to a file.
#[derive(Clone, Debug)]
enum Damage {
    /// XOR these bytes into these positions (taken modulo the length).
    Flip(Vec<(usize, u8)>),
    /// Keep this share (per mille) of the file.
    Cut(u16),
    /// Overwrite the 8 bytes at this position with this number (sizes and offsets).
    Number(usize, u64),
    /// Append bytes.
    Grow(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        proptest::collection::vec((any::<usize>(), 1u8..=255), 1..8).prop_map(Damage::Flip),
        (0u16..1000).prop_map(Damage::Cut),
        (
            any::<usize>(),
            prop_oneof![any::<u64>(), Just(u64::MAX), Just(1 << 40)]
        )
            .prop_map(|(at, v)| Damage::Number(at, v)),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(Damage::Grow),
    ]
}

fn apply(bytes: &[u8], d: &Damage) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match d {
        Damage::Flip(flips) => {
            for &(at, x) in flips {
                let i = at % out.len();
                out[i] ^= x;
            }
        }
        Damage::Cut(per_mille) => out.truncate(out.len() * *per_mille as usize / 1000),
        Damage::Number(at, v) => {
            // the header-length field and the JSON after it hold the sizes worth attacking
            let i = at % out.len().saturating_sub(8).max(1);
            let end = (i + 8).min(out.len());
            out[i..end].copy_from_slice(&v.to_le_bytes()[..end - i]);
        }
        Damage::Grow(extra) => out.extend_from_slice(extra),
    }
    out
}

proptest! {
    #[test]
    fn damaged_checkpoints_and_code_files_load_or_fail_cleanly(d in damage(), which in 0..2usize) {
        let dir = scratch("ck");
        let (ck, codes) = valid_files(&dir);
        let path = dir.join(format!("damaged-{which}.safetensors"));
        std::fs::write(&path, apply(if which == 0 { &ck } else { &codes }, &d)).unwrap();
        if let Ok(loaded) = Checkpoint::load(&path) {
            // what loads is whole: every value finite
            prop_assert!(loaded.first_non_finite().is_none());
        }
        let _ = CodeGrids::load(&path, "train");
    }

    #[test]
    fn random_bytes_are_not_a_checkpoint(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = scratch("random");
        let path = dir.join("random.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        prop_assert!(Checkpoint::load(&path).is_err() || bytes.len() >= 8);
        let _ = CodeGrids::load(&path, "test");
    }

    #[test]
    fn damaged_idx_files_load_or_fail_cleanly(
        n in 0u32..4,
        rows in 0u32..6,
        cols in 0u32..6,
        d in damage(),
        on_labels in any::<bool>(),
    ) {
        let dir = scratch(&format!("idx-{n}-{rows}-{cols}-{on_labels}"));
        let mut images = vec![0, 0, 8, 3];
        for v in [n, rows, cols] {
            images.extend_from_slice(&v.to_be_bytes());
        }
        images.resize(16 + (n * rows * cols) as usize, 7);
        let mut labels = vec![0, 0, 8, 1];
        labels.extend_from_slice(&n.to_be_bytes());
        labels.resize(8 + n as usize, 1);
        if on_labels {
            labels = apply(&labels, &d);
        } else {
            images = apply(&images, &d);
        }
        std::fs::write(dir.join("t10k-images-idx3-ubyte"), &images).unwrap();
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), &labels).unwrap();
        let _ = Idx::open(&dir, Split::Test);
    }

    #[test]
    fn damaged_cifar_files_load_or_fail_cleanly(records in 1usize..3, d in damage()) {
        let dir = scratch(&format!("cifar-{records}"));
        let record = 1 + 3 * 32 * 32;
        let bytes = (0..records * record)
            .map(|i| if i % record == 0 { (i / record % 10) as u8 } else { 128 })
            .collect::<Vec<u8>>();
        std::fs::write(dir.join("test_batch.bin"), apply(&bytes, &d)).unwrap();
        let _ = Cifar10::open(&dir, Split::Test);
    }
}

/// A damaged code file's error names the file, and does not call it a checkpoint.
#[test]
fn a_code_file_cut_short_is_named_in_its_error() {
    let dir = scratch("named");
    let (_, codes) = valid_files(&dir);
    let path = dir.join("cut-codes.safetensors");
    std::fs::write(&path, &codes[..codes.len() / 2]).unwrap();
    let message = CodeGrids::load(&path, "train").unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}: not a valid safetensors file", path.display())),
        "{message}"
    );
    assert!(!message.contains("checkpoint"), "{message}");
}
