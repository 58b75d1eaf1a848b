//! The one way vqgpu writes a file: a temporary file in the same directory, written, flushed to
//! disk, renamed over the target, then the directory flushed too. A crash or an error at any point
//! leaves either the old file or the new one, never a mix; on an error the temporary file is
//! removed, so a full disk is not kept full.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically (creating its directory if needed).
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, &mut |file| file.write_all(bytes))
}

/// Writes to `path` atomically what `fill` writes into the temporary file. If `fill` fails, or
/// any later step does, the temporary file is removed and `path` is left as it was.
pub fn write_with(
    path: &Path,
    fill: &mut dyn FnMut(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = parent_dir(path);
    refuse_file_as_dir(&dir)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let tmp = temporary_path(path);
    let result = (|| {
        let mut file = File::options().write(true).create_new(true).open(&tmp)?;
        fill(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        // the original error is what the user needs; a failed clean-up adds nothing to it
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    sync_dir(&dir).map_err(|e| Error::io(&dir, e))
}

/// Refuses to write `out` when it is one of a command's `inputs` (the same file, however spelled):
/// a command never writes over its own input.
pub fn refuse_own_input(out: &Path, inputs: &[&Path]) -> Result<()> {
    let Ok(target) = out.canonicalize() else {
        return Ok(()); // no such file yet: it cannot be an input
    };
    for input in inputs {
        if input.canonicalize().is_ok_and(|i| i == target) {
            return Err(Error::InvalidArgument(format!(
                "{} is this command's input: refusing to write over it (choose another output path)",
                out.display()
            )));
        }
    }
    Ok(())
}

/// Refuses an output directory `dir` that is, or would lie under, an existing file, naming the
/// file (creating it would fail with the system's "not a directory" or "file exists").
pub fn refuse_file_as_dir(dir: &Path) -> Result<()> {
    let file = dir
        .ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists() && !p.is_dir());
    match file {
        Some(file) => Err(Error::InvalidArgument(format!(
            "{} is a file, not a directory: choose another --out",
            file.display()
        ))),
        None => Ok(()),
    }
}

/// Refuses an output file `path` that names a directory or lies under a file: checked before a
/// command's work, so that the write at its end cannot fail for it.
pub fn check_output_file(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "{} is a directory: give --out a file name",
            path.display()
        )));
    }
    refuse_file_as_dir(&parent_dir(path))
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `.NAME.tmp-PID` beside `path`: hidden, and distinct per process.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    parent_dir(path).join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Flushes a directory's entries (the rename) to disk, where the platform can.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vqgpu-atomic-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        dir
    }

    #[test]
    fn a_write_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = scratch("ok");
        let path = dir.join("a.bin");
        write(&path, b"first").unwrap();
        write(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "only the file");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary_one() {
        let dir = scratch("fail");
        let path = dir.join("a.bin");
        write(&path, b"old contents").unwrap();
        let err = write_with(&path, &mut |f| {
            f.write_all(b"half of the new")?;
            Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "no space left on device",
            ))
        })
        .unwrap_err();
        assert!(err.to_string().contains("no space left"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old contents");
        assert!(!temporary_path(&path).exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "only the file");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn an_output_directory_at_or_under_a_file_is_refused_naming_the_file() {
        let dir = scratch("file-as-dir");
        let file = dir.join("metrics.csv");
        write(&file, b"step,loss").unwrap();
        for wanted in [
            file.clone(),
            file.join("run"),
            file.join("run").join("deeper"),
        ] {
            let err = refuse_file_as_dir(&wanted).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{} is a file, not a directory", file.display())),
                "{err}"
            );
        }
        // a directory, or one not made yet, is fine
        refuse_file_as_dir(&dir).unwrap();
        refuse_file_as_dir(&dir.join("new").join("run")).unwrap();
        refuse_file_as_dir(Path::new("runs/pipeline")).unwrap();
        // an output file: not a directory, not under a file
        let err = check_output_file(&dir).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        let err = check_output_file(&file.join("grid.png"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a file, not a directory"), "{err}");
        check_output_file(&file).unwrap();
        check_output_file(&dir.join("new").join("codes.safetensors")).unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }
}
