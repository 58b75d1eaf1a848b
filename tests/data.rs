//! Datasets and the loader: IDX (gzipped and raw) and CIFAR-10 files written by the test, malformed
//! files rejected with clear errors, the built-in shapes dataset, image folders, batch determinism.

use std::io::Write;
use std::path::Path;

use vqgpu::data::{self, batch_indices, Cifar10, Dataset, Idx, Loader, Shapes, Split};
use vqgpu::Error;

fn idx_bytes(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(payload);
    b
}

fn write(path: &Path, bytes: &[u8], gzip: bool) {
    let mut f = std::fs::File::create(path).unwrap();
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap();
    } else {
        f.write_all(bytes).unwrap();
    }
}

/// Three 28x28 images whose pixel (y, x) is (i * 50 + y + x) % 256, labels 7, 1, 4.
fn write_idx(dir: &Path, prefix: &str, gzip: bool) {
    let pixels: Vec<u8> = (0..3)
        .flat_map(|i| (0..28 * 28).map(move |p| ((i * 50 + p / 28 + p % 28) % 256) as u8))
        .collect();
    let ext = if gzip { ".gz" } else { "" };
    write(
        &dir.join(format!("{prefix}-images-idx3-ubyte{ext}")),
        &idx_bytes(0x803, &[3, 28, 28], &pixels),
        gzip,
    );
    write(
        &dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")),
        &idx_bytes(0x801, &[3], &[7, 1, 4]),
        gzip,
    );
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vqgpu-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn idx_files_load_gzipped_or_raw_and_are_padded_to_32() {
    let dir = temp_dir("idx");
    write_idx(&dir, "train", true);
    write_idx(&dir, "t10k", false);
    for split in [Split::Train, Split::Test] {
        let d = Idx::open(&dir, split).unwrap();
        assert_eq!((d.len(), d.image_shape()), (3, [1, 32, 32]));
        assert_eq!(
            [d.label(0), d.label(1), d.label(2)],
            [Some(7), Some(1), Some(4)]
        );
        let mut img = vec![0u8; 32 * 32];
        d.image(2, &mut img);
        assert_eq!(img[0], 0, "the border is zero");
        assert_eq!(img[31 * 32 + 31], 0);
        assert_eq!(img[(2 + 5) * 32 + 2 + 9], 100 + 5 + 9);
    }
}

#[test]
fn malformed_idx_files_are_clear_errors() {
    let dir = temp_dir("idx-bad");
    // missing
    let err = Idx::open(&dir, Split::Train).err().expect("missing files");
    assert!(
        matches!(err, Error::Dataset(_)) && err.to_string().contains("not found"),
        "{err}"
    );
    // wrong magic
    write(
        &dir.join("train-images-idx3-ubyte"),
        &idx_bytes(0x801, &[3, 28, 28], &[0; 3 * 784]),
        false,
    );
    write(
        &dir.join("train-labels-idx1-ubyte"),
        &idx_bytes(0x801, &[3], &[0; 3]),
        false,
    );
    let err = Idx::open(&dir, Split::Train).err().expect("wrong magic");
    assert!(err.to_string().contains("magic number"), "{err}");
    // truncated payload
    write(
        &dir.join("train-images-idx3-ubyte"),
        &idx_bytes(0x803, &[3, 28, 28], &[0; 1000]),
        false,
    );
    let err = Idx::open(&dir, Split::Train).err().expect("truncated");
    assert!(err.to_string().contains("truncated"), "{err}");
    // a truncated gzip stream
    std::fs::remove_file(dir.join("train-images-idx3-ubyte")).unwrap();
    write(
        &dir.join("train-images-idx3-ubyte.gz"),
        &idx_bytes(0x803, &[3, 28, 28], &[0; 3 * 784]),
        true,
    );
    let gz = std::fs::read(dir.join("train-images-idx3-ubyte.gz")).unwrap();
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), &gz[..gz.len() / 2]).unwrap();
    let err = Idx::open(&dir, Split::Train).err().expect("truncated gzip");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn cifar10_batches_load_and_bad_sizes_are_rejected() {
    let dir = temp_dir("cifar");
    let record = |label: u8, fill: u8| {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(fill, 3072));
        r
    };
    for i in 1..=5 {
        std::fs::write(
            dir.join(format!("data_batch_{i}.bin")),
            [record(i, i * 10), record(9, 1)].concat(),
        )
        .unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), record(3, 200)).unwrap();
    let train = Cifar10::open(&dir, Split::Train).unwrap();
    assert_eq!((train.len(), train.image_shape()), (10, [3, 32, 32]));
    let mut img = vec![0u8; 3072];
    train.image(4, &mut img);
    assert_eq!((train.label(4), img[0], img[3071]), (Some(3), 30, 30));
    assert_eq!(Cifar10::open(&dir, Split::Test).unwrap().label(0), Some(3));
    std::fs::write(dir.join("test_batch.bin"), vec![0u8; 3000]).unwrap();
    let err = Cifar10::open(&dir, Split::Test).err().expect("bad size");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn folders_of_images_are_cropped_resized_and_split() {
    let dir = temp_dir("folder");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..12 {
        let img = image::RgbImage::from_fn(40 + i, 30, |x, _| {
            image::Rgb([(x * 5) as u8, 100, i as u8 * 10])
        });
        let path = if i % 2 == 0 {
            dir.join(format!("a{i:02}.png"))
        } else {
            dir.join("sub").join(format!("b{i:02}.png"))
        };
        img.save(path).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
    let train = data::open("folder", Some(&dir), Split::Train, 16).unwrap();
    let test = data::open("folder", Some(&dir), Split::Test, 16).unwrap();
    assert_eq!(
        (train.len(), test.len(), train.image_shape()),
        (11, 1, [3, 16, 16])
    );
    let mut img = vec![0u8; 3 * 256];
    train.image(0, &mut img);
    assert!(
        img[256..512].iter().all(|&g| (99..=101).contains(&g)),
        "green plane is constant 100"
    );
    let err = data::open("folder", Some(&dir.join("sub")), Split::Test, 16)
        .err()
        .expect("too few for a test split");
    assert!(matches!(err, Error::Dataset(_)), "{err}");
    assert!(err.to_string().contains("needs 10 or more"), "{err}");
    let err = data::open("folder", None, Split::Train, 16)
        .err()
        .expect("needs --data");
    assert!(err.to_string().contains("--data"), "{err}");
    let err = data::open("nope", None, Split::Train, 16)
        .err()
        .expect("unknown");
    assert!(err.to_string().contains("unknown dataset"), "{err}");
}

#[test]
fn shapes_are_deterministic_varied_and_split() {
    let train = Shapes::new(3, Split::Train);
    let test = Shapes::new(3, Split::Test);
    assert!(train.len() >= 10_000 && test.len() >= 1_000);
    let get = |d: &Shapes, i| {
        let mut v = vec![0u8; 3 * 32 * 32];
        d.image(i, &mut v);
        v
    };
    assert_eq!(get(&train, 5), get(&Shapes::new(3, Split::Train), 5));
    assert_ne!(get(&train, 5), get(&test, 5));
    assert_ne!(get(&train, 5), get(&Shapes::new(4, Split::Train), 5));
    let distinct: std::collections::HashSet<Vec<u8>> = (0..200).map(|i| get(&train, i)).collect();
    assert_eq!(distinct.len(), 200);
    let labels: std::collections::HashSet<u32> = (0..200).filter_map(|i| train.label(i)).collect();
    assert_eq!(labels.len(), 4, "all four shape kinds occur");
    // images use the whole range of colours, not a constant
    let img = get(&train, 0);
    assert!(img.iter().max().unwrap() - img.iter().min().unwrap() > 100);
}

#[test]
fn batches_depend_only_on_seed_and_step() {
    let data: std::sync::Arc<dyn Dataset> = std::sync::Arc::new(Shapes::new(0, Split::Test));
    // every index once per epoch, in a seed-dependent order
    let epoch: Vec<usize> = (0..20)
        .flat_map(|s| batch_indices(2000, 100, 9, s))
        .collect();
    let mut sorted = epoch.clone();
    sorted.sort();
    assert_eq!(sorted, (0..2000).collect::<Vec<_>>());
    assert_ne!(
        batch_indices(2000, 100, 9, 20),
        batch_indices(2000, 100, 9, 0),
        "a new order each epoch"
    );
    assert_ne!(
        batch_indices(2000, 100, 8, 0),
        batch_indices(2000, 100, 9, 0)
    );
    // a loader started at step 5 yields what a loader from 0 yields at step 5
    let mut from_zero = Loader::new(data.clone(), 4, 1, 0, 6);
    let fifth = (0..6)
        .map(|_| from_zero.next_batch().unwrap())
        .last()
        .unwrap();
    let mut resumed = Loader::new(data.clone(), 4, 1, 5, 6);
    let again = resumed.next_batch().unwrap();
    assert_eq!(
        (fifth.step, fifth.inputs.clone(), fifth.labels.clone()),
        (again.step, again.inputs, again.labels)
    );
    assert!(resumed.next_batch().is_none());
    // the batch holds the images' bytes, in the order of the step's indices
    let mut image = vec![0u8; 3 * 32 * 32];
    for (slot, &index) in batch_indices(data.len(), 4, 1, 5).iter().enumerate() {
        data.image(index, &mut image);
        assert_eq!(
            fifth.inputs[slot * image.len()..(slot + 1) * image.len()],
            image
        );
    }
}
