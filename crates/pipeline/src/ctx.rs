//! [`Ctx`]: how a job reports while it runs (progress, notes, result lines) and which clock it reads. The jobs
//! know nothing of terminals: the command line passes a [`Reporter`] that draws bars, a library caller or a test
//! the silent one.

use std::fmt::Debug;
use std::io::Write as _;
use std::sync::Arc;

use stockcast_features::Clock;

/// One long step of a job, as the reporter shows it.
pub trait Task: Send + Sync {
    /// `done` of `total` items (0 of 0 for a step of unknown length), with what is being done now.
    fn update(&self, done: u64, total: u64, msg: &str);
    /// The step is over: remove it from view.
    fn finish(&self);
}

/// Where a job's progress, notes and results go.
pub trait Reporter: Send + Sync + Debug {
    /// A step of unknown length (a spinner).
    fn step(&self, msg: &str) -> Box<dyn Task>;
    /// A step counting items.
    fn bar(&self, msg: &str) -> Box<dyn Task>;
    /// A note for the user (stderr, or a log event).
    fn note(&self, msg: &str);
    /// A result line (stdout).
    fn out(&self, line: &str) {
        // A closed pipe is not an error.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
    /// True when logs are JSON lines: structured events instead of text summaries.
    fn json_logs(&self) -> bool {
        false
    }
    /// True when summaries of checks that all passed are left out.
    fn quiet(&self) -> bool {
        false
    }
}

/// Shows nothing while a job runs; notes go to stderr and results to stdout.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

struct NoTask;

impl Task for NoTask {
    fn update(&self, _: u64, _: u64, _: &str) {}
    fn finish(&self) {}
}

impl Reporter for Silent {
    fn step(&self, _: &str) -> Box<dyn Task> {
        Box::new(NoTask)
    }
    fn bar(&self, _: &str) -> Box<dyn Task> {
        Box::new(NoTask)
    }
    fn note(&self, msg: &str) {
        eprintln!("{msg}");
    }
    fn quiet(&self) -> bool {
        true
    }
}

/// Per-run context passed to every job: the reporter and the clock.
#[derive(Debug, Clone)]
pub struct Ctx {
    reporter: Arc<dyn Reporter>,
    clock: Clock,
}

impl Ctx {
    /// A context reporting through `reporter` and reading `clock`.
    pub fn new(reporter: Arc<dyn Reporter>, clock: Clock) -> Self {
        Self { reporter, clock }
    }

    /// No progress and no quality summaries (library callers and tests); results still go to stdout.
    pub fn quiet(clock: Clock) -> Self {
        Self::new(Arc::new(Silent), clock)
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
        self.reporter.json_logs()
    }

    /// True when summaries of checks that all passed are left out.
    pub fn quiet_summaries(&self) -> bool {
        self.reporter.quiet()
    }

    /// A step of unknown length.
    pub fn step(&self, msg: &str) -> Box<dyn Task> {
        self.reporter.step(msg)
    }

    /// A step counting items.
    pub fn bar(&self, msg: &str) -> Box<dyn Task> {
        self.reporter.bar(msg)
    }

    /// A note for the user on stderr (a log event when logs are JSON).
    pub fn note(&self, msg: &str) {
        self.reporter.note(msg);
    }

    /// A result line on stdout.
    pub fn out(&self, line: &str) {
        self.reporter.out(line);
    }
}
