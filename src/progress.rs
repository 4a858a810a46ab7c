//! Progress display (indicatif) for long steps: shown on an interactive stderr with text logs, hidden otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::LogFormat;

/// Creates progress bars consistent with the log settings.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    visible: bool,
}

impl Progress {
    pub(crate) fn new(format: LogFormat, quiet: bool) -> Self {
        Self { visible: format == LogFormat::Text && !quiet && std::io::stderr().is_terminal() }
    }

    /// Never drawn.
    pub(crate) fn hidden() -> Self {
        Self { visible: false }
    }

    /// True when bars are drawn.
    pub fn visible(self) -> bool {
        self.visible
    }

    fn target(self) -> ProgressDrawTarget {
        if self.visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() }
    }

    /// A spinner for a step of unknown length.
    pub fn step(self, msg: &str) -> ProgressBar {
        let pb = ProgressBar::with_draw_target(None, self.target());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
            pb.set_style(style);
        }
        pb.set_message(msg.to_owned());
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    }

    /// A bar over `len` items.
    pub fn bar(self, len: u64, msg: &str) -> ProgressBar {
        let pb = ProgressBar::with_draw_target(Some(len), self.target());
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} [{elapsed}<{eta}]") {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(msg.to_owned());
        pb
    }
}
