//! Progress of long work on the console: a bar with the latest metrics on a terminal, one line
//! per report otherwise (logs, CI).

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar over `total` steps.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar at `position` of `total`.
    pub fn new(position: u64, total: u64) -> Self {
        let bar = ProgressBar::new(total).with_position(position);
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
        ) {
            bar.set_style(style);
        }
        Self { bar }
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
            eprintln!("{line}");
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
