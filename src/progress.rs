//! The command line's [`Reporter`]: indicatif bars and spinners on an interactive stderr with text logs (hidden
//! otherwise), notes on stderr or as log events, results on stdout.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stockcast_pipeline::{Reporter, Task};

use crate::cli::LogFormat;

/// Reports a job on the terminal, consistent with the log settings.
#[derive(Debug, Clone, Copy)]
pub struct Terminal {
    visible: bool,
    json_logs: bool,
    quiet: bool,
}

impl Terminal {
    /// For `--log-format` and `--quiet`: bars only on an interactive stderr with text logs and not quiet.
    pub fn new(format: LogFormat, quiet: bool) -> Self {
        Self {
            visible: format == LogFormat::Text && !quiet && std::io::stderr().is_terminal(),
            json_logs: format == LogFormat::Json,
            quiet,
        }
    }

    /// True when bars are drawn.
    pub fn visible(self) -> bool {
        self.visible
    }

    fn target(self) -> ProgressDrawTarget {
        if self.visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() }
    }
}

/// An indicatif bar or spinner.
struct Bar(ProgressBar);

impl Task for Bar {
    fn update(&self, done: u64, total: u64, msg: &str) {
        self.0.set_length(total);
        self.0.set_position(done);
        self.0.set_message(msg.to_owned());
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Reporter for Terminal {
    fn step(&self, msg: &str) -> Box<dyn Task> {
        let pb = ProgressBar::with_draw_target(None, self.target());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
            pb.set_style(style);
        }
        pb.set_message(msg.to_owned());
        pb.enable_steady_tick(Duration::from_millis(120));
        Box::new(Bar(pb))
    }

    fn bar(&self, msg: &str) -> Box<dyn Task> {
        let pb = ProgressBar::with_draw_target(Some(0), self.target());
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} [{elapsed}<{eta}]") {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(msg.to_owned());
        Box::new(Bar(pb))
    }

    fn note(&self, msg: &str) {
        if self.json_logs {
            tracing::info!("{msg}");
        } else {
            eprintln!("{msg}");
        }
    }

    fn json_logs(&self) -> bool {
        self.json_logs
    }

    fn quiet(&self) -> bool {
        self.quiet
    }
}
