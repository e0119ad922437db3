//! Progress bars for long work (hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting `total` items with rate and ETA.
pub fn bar(total: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Progress as plain lines when stderr is not a terminal (a log file, CI), where bars are
/// hidden: a line at every tenth of the work, so a log of a long run shows where it is.
pub struct Log {
    label: String,
    total: usize,
    next: std::cell::Cell<usize>,
    enabled: bool,
    started: std::time::Instant,
}

impl Log {
    pub fn new(label: &str, total: usize) -> Self {
        use std::io::IsTerminal;
        Log {
            label: label.to_string(),
            total,
            next: std::cell::Cell::new(total.div_ceil(10).max(1)),
            enabled: !std::io::stderr().is_terminal(),
            started: std::time::Instant::now(),
        }
    }

    /// Reports `done` of the total (with `extra`, say a rate) when it crosses the next tenth.
    pub fn tick(&self, done: usize, extra: &str) {
        if !self.enabled || done < self.next.get() {
            return;
        }
        self.next
            .set(done + self.total.div_ceil(10).max(1).min(self.total));
        eprintln!(
            "{}: {done}/{} after {:.0} s {extra}",
            self.label,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// A phase of a long run, as one line on stderr.
pub fn phase(message: &str) {
    eprintln!("{message}");
}
