//! Progress of long work on the console: a bar with the latest metrics on a terminal, one line
//! per report otherwise (logs, CI).

use std::cell::RefCell;

use indicatif::{ProgressBar, ProgressStyle};

thread_local! {
    /// The label of the stage of a longer job that bars made now belong to (see [`in_stage`]).
    static STAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `work` as one stage of a longer job: every bar made meanwhile on this thread starts with
/// `label` (for example "stage 2 of 4: encode"), and so does every line printed without a terminal.
pub fn in_stage<T>(label: String, work: impl FnOnce() -> T) -> T {
    let outer = STAGE.with(|s| s.replace(Some(label)));
    let result = work();
    STAGE.with(|s| *s.borrow_mut() = outer);
    result
}

/// The current stage's label followed by a separator, or nothing outside a stage.
fn stage_prefix() -> String {
    STAGE.with(|s| {
        s.borrow()
            .as_ref()
            .map(|l| format!("{l} | "))
            .unwrap_or_default()
    })
}

/// A progress bar over `total` steps.
pub struct Progress {
    bar: ProgressBar,
    prefix: String,
}

impl Progress {
    /// A bar at `position` of `total`.
    pub fn new(position: u64, total: u64) -> Self {
        let prefix = stage_prefix();
        let bar = ProgressBar::new(total)
            .with_position(position)
            .with_prefix(prefix.clone());
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix}{bar:24} {pos}/{len} [{elapsed} < {eta}] {wide_msg}",
        ) {
            bar.set_style(style);
        }
        Self { bar, prefix }
    }

    /// Moves the bar to `step` and nothing else (without a terminal: nothing), for progress too
    /// frequent to print a line for.
    pub fn advance(&self, step: u64) {
        self.bar.set_position(step);
    }

    /// Moves the bar to `step` with `line` as its message, or prints `line` without a terminal.
    pub fn show(&self, step: u64, line: String) {
        self.bar.set_position(step);
        if self.bar.is_hidden() {
            eprintln!("{}{line}", self.prefix);
        } else {
            self.bar.set_message(line);
        }
    }
}

impl Drop for Progress {
    /// Leaves the finished bar on the screen and the cursor on the next line, where the next
    /// message goes (the bar's last draw does not end its line).
    fn drop(&mut self) {
        self.bar.finish();
        if !self.bar.is_hidden() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_made_in_a_stage_carry_its_label_and_others_none() {
        assert_eq!(stage_prefix(), "");
        let inner = in_stage("stage 2 of 4: encode".into(), || {
            let bar = Progress::new(0, 10);
            (stage_prefix(), bar.prefix.clone())
        });
        assert_eq!(inner.0, "stage 2 of 4: encode | ");
        assert_eq!(inner.1, inner.0);
        assert_eq!(stage_prefix(), "", "the label ends with its stage");
    }
}
