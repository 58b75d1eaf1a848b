//! The metrics CSV of a training run: one header, then one numeric row per log. Every change
//! rewrites the file atomically, so a crash never leaves half a row.

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::atomic;

/// The text of the CSV at `path`, or `None` if there is no such file.
fn read_text(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Adds `line` as the last row of the CSV at `path`, writing `header` first when the file is new.
pub fn append(path: &Path, header: &str, line: &str) -> Result<()> {
    let mut text = read_text(path)?.unwrap_or_else(|| format!("{header}\n"));
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    atomic::write(path, text.as_bytes())
}

/// Keeps the header and the rows whose first column (the step) is at most `step`, dropping the
/// rest: on resuming from a checkpoint of `step`, the rows a crashed run logged after it (they
/// are logged again). Rows whose step does not parse are dropped too. No file: nothing to do.
pub fn truncate_after(path: &Path, step: u64) -> Result<()> {
    let Some(text) = read_text(path)? else {
        return Ok(());
    };
    let mut lines = text.lines();
    let mut kept = String::new();
    if let Some(header) = lines.next() {
        kept.push_str(header);
        kept.push('\n');
    }
    for line in lines {
        let row_step = line.split(',').next().and_then(|s| s.parse::<u64>().ok());
        if row_step.is_some_and(|s| s <= step) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if kept != text {
        atomic::write(path, kept.as_bytes())?;
    }
    Ok(())
}

/// The numeric rows of a CSV after its header (empty cells become NaN). A row with another
/// number of fields than the header, or a cell that is not a number, is an error naming its line.
pub fn read_rows(csv: &Path) -> Result<Vec<Vec<f64>>> {
    let text = std::fs::read_to_string(csv).map_err(|e| Error::io(csv, e))?;
    let mut lines = text.lines();
    let fields = lines.next().map_or(0, |h| h.split(',').count());
    lines
        .enumerate()
        .map(|(i, line)| {
            let bad = |what: String| {
                Error::InvalidArgument(format!("{} line {}: {what}", csv.display(), i + 2))
            };
            let cells: Vec<&str> = line.split(',').collect();
            if cells.len() != fields {
                return Err(bad(format!(
                    "{} fields where the header has {fields}",
                    cells.len()
                )));
            }
            cells
                .iter()
                .map(|v| match v.trim() {
                    "" => Ok(f64::NAN),
                    v => v.parse().map_err(|_| bad(format!("{v:?} is not a number"))),
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("vqgpu-csv-{name}-{}.csv", std::process::id()))
    }

    #[test]
    fn rows_are_appended_and_cut_back_to_a_step() {
        let path = scratch("cut");
        std::fs::remove_file(&path).ok();
        for step in [10, 20, 30, 40] {
            append(&path, "step,loss", &format!("{step},0.5")).unwrap();
        }
        truncate_after(&path, 20).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "step,loss\n10,0.5\n20,0.5\n"
        );
        append(&path, "step,loss", "30,0.25").unwrap();
        assert_eq!(read_rows(&path).unwrap().len(), 3);
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn a_merged_or_damaged_row_is_refused() {
        let path = scratch("merged");
        // a kill between a row and its newline, then the next row appended to it
        std::fs::write(&path, "step,loss,rate\n10,0.5,100\n20,0.4,10030,0.3,100\n").unwrap();
        let err = read_rows(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 3: 5 fields where the header has 3"),
            "{err}"
        );
        std::fs::write(&path, "step,loss\n10,abc\n").unwrap();
        assert!(read_rows(&path).is_err());
        std::fs::write(&path, "step,loss\n10,\n").unwrap();
        assert!(
            read_rows(&path).unwrap()[0][1].is_nan(),
            "empty cells are allowed"
        );
        std::fs::remove_file(&path).ok();
    }
}
