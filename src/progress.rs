//! Progress on stderr for long reads: shown only when stderr is a terminal, silent when piped.

use std::cell::{Cell, RefCell};
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-progress bar that also counts spans; a no-op when stderr is not a terminal.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    spans: Cell<u64>,
    file: RefCell<String>,
}

impl Progress {
    /// A bar over `total` bytes of input.
    pub(crate) fn bytes(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Progress {
            bar,
            spans: Cell::new(0),
            file: RefCell::new(String::new()),
        }
    }

    /// A spinner with a message, for work of unknown length (ticks on its own).
    pub(crate) fn spinner(message: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_message(message.to_string());
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            spans: Cell::new(0),
            file: RefCell::new(String::new()),
        }
    }

    /// Names the file being read.
    pub(crate) fn set_message(&self, file: &str) {
        if let Some(bar) = &self.bar {
            *self.file.borrow_mut() = file.to_string();
            bar.set_message(format!("{} spans · {file}", self.spans.get()));
        }
    }

    /// Counts spans read.
    pub(crate) fn spans(&self, n: u64) {
        self.spans.set(self.spans.get() + n);
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{} spans · {}",
                self.spans.get(),
                self.file.borrow()
            ));
        }
    }

    /// Counts bytes of finished files.
    pub(crate) fn inc(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// Runs `f` (which prints) with the bar hidden.
    pub(crate) fn suspend(&self, f: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
