//! [`Ctx`]: how a job reports while it runs (progress bars, notes, result lines) and which clock it reads.

use std::io::Write as _;

use stockcast_features::Clock;

use crate::cli::LogFormat;
use crate::progress::Progress;

/// Per-run context passed to every job: progress display, where notes and result lines go, and the clock.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Progress bars (hidden off a terminal, with JSON logs or `--quiet`).
    pub progress: Progress,
    /// Logs are JSON lines: human-readable text goes through `tracing` events instead of plain stderr lines.
    json_logs: bool,
    /// `--quiet`: no quality summary when every check passed.
    pub(crate) quiet: bool,
    clock: Clock,
}

impl Ctx {
    /// The context of a command-line run.
    pub fn new(log_format: LogFormat, quiet: bool, clock: Clock) -> Self {
        Self { progress: Progress::new(log_format, quiet), json_logs: log_format == LogFormat::Json, quiet, clock }
    }

    /// No progress bars and no quality summaries (library callers and tests); results still go to stdout.
    pub fn quiet(clock: Clock) -> Self {
        Self { progress: Progress::hidden(), json_logs: false, quiet: true, clock }
    }

    /// The same context reading another clock (e.g. a `--created-at` given on the command line).
    #[must_use]
    pub fn with_clock(&self, clock: Clock) -> Self {
        Self { clock, ..self.clone() }
    }

    /// The clock jobs read "now" from.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// True when logs are JSON lines.
    pub fn json_logs(&self) -> bool {
        self.json_logs
    }

    /// A note for the user on stderr (a log event when logs are JSON).
    pub fn note(&self, msg: &str) {
        if self.json_logs {
            tracing::info!("{msg}");
        } else {
            eprintln!("{msg}");
        }
    }

    /// A result line on stdout; a closed pipe is not an error.
    pub fn out(&self, line: &str) {
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}
