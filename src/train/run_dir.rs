//! A run directory belongs to one run: a lock held for the run's lifetime keeps a second process
//! out, and a fresh run does not write over another run's files unless asked to.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::csv;

use super::{CHECKPOINT_FILE, METRICS_FILE};

/// The lock file inside a run directory.
pub const LOCK_FILE: &str = ".vqgpu.lock";

/// An exclusive lock on a run directory, released when dropped (or when the process ends, however
/// it ends: the operating system drops the lock with the file).
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Creates `dir` if needed and locks it; fails at once if another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        crate::io::atomic::refuse_file_as_dir(dir)?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(Error::InvalidArgument(format!(
                "another vqgpu process is writing into {} (it holds {}): wait for it to finish or choose another --out",
                dir.display(),
                path.display()
            ))),
            Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}

/// Whether `dir` holds (part of) a training run.
pub fn holds_run(dir: &Path) -> bool {
    dir.join(CHECKPOINT_FILE).exists() || dir.join(METRICS_FILE).exists()
}

/// The same directory, by the file system rather than by spelling.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Makes `dir` (locked) ready for a run at `step` (0: fresh) that resumed from `resumed_from`:
/// refuses another run's directory unless `overwrite`; a fresh run starts a new `metrics.csv`, and
/// a resumed one drops the rows logged after its checkpoint.
pub fn claim(dir: &Path, step: u64, resumed_from: Option<&PathBuf>, overwrite: bool) -> Result<()> {
    let own = resumed_from.is_some_and(|r| same_dir(r, dir));
    if holds_run(dir) && !own && !overwrite {
        return Err(Error::InvalidArgument(format!(
            "{} already holds a training run ({} or {}): continue it with --resume {0}, choose another --out, or pass --overwrite to replace it",
            dir.display(),
            CHECKPOINT_FILE,
            METRICS_FILE
        )));
    }
    let metrics = dir.join(METRICS_FILE);
    if own {
        csv::truncate_after(&metrics, step)
    } else {
        match std::fs::remove_file(&metrics) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&metrics, e)),
            _ => Ok(()),
        }
    }
}
