//! The metrics CSV of a training run: one header, then one numeric row per log.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Appends `line` to the CSV at `path`, writing `header` first when the file is new.
pub fn append(path: &Path, header: &str, line: &str) -> Result<()> {
    let fresh = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    if fresh {
        writeln!(f, "{header}").map_err(|e| Error::io(path, e))?;
    }
    writeln!(f, "{line}").map_err(|e| Error::io(path, e))
}

/// The numeric rows of a CSV after its header (unparsable or empty cells become NaN).
pub fn read_rows(csv: &Path) -> Result<Vec<Vec<f64>>> {
    let text = std::fs::read_to_string(csv).map_err(|e| Error::io(csv, e))?;
    Ok(text
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|v| v.parse().unwrap_or(f64::NAN))
                .collect()
        })
        .collect())
}
