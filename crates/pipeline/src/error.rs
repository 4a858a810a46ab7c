//! The jobs' error: every member crate's error, a usage error, a data-quality failure and the context a job adds
//! ("loading prices from …"), classified once by [`Error::kind`] for exit codes and HTTP-free callers.

/// A job's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caller does with a failed job: the command line maps these to exit codes 2, 3 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The user's arguments, configuration or data: fix the input and rerun.
    Usage,
    /// A data-quality check stopped the nightly job.
    Quality,
    /// The environment or the program (I/O, a database, a held lock, an internal error).
    Failure,
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad arguments or configuration, named.
    #[error("{0}")]
    Usage(String),
    /// A data-quality check failed while the nightly job loaded its prices (the cause says which).
    #[error("data-quality check failed")]
    Quality(#[source] Box<Error>),
    /// Loading, checking and feature errors.
    #[error(transparent)]
    Features(#[from] stockcast_features::Error),
    /// Model and registry errors.
    #[error(transparent)]
    Models(#[from] stockcast_models::Error),
    /// Walk-forward, portfolio and report errors.
    #[error(transparent)]
    Backtest(#[from] stockcast_backtest::Error),
    /// Database and recommendation errors.
    #[error(transparent)]
    Infer(#[from] stockcast_infer::Error),
    /// I/O outside the member crates (a runtime, a staging directory).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Serialising a record (a run summary, a report).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Serialising a resolved configuration.
    #[error(transparent)]
    Toml(#[from] toml::ser::Error),
    /// A failure of the job itself: another process holds the registry, the data changed under a plan.
    #[error("{0}")]
    Failed(String),
    /// What the job was doing when `source` happened.
    #[error("{context}")]
    Context {
        /// What was being done.
        context: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// How to treat the error: the innermost classified cause decides.
    pub fn kind(&self) -> Kind {
        let user = |yes: bool| if yes { Kind::Usage } else { Kind::Failure };
        match self {
            Self::Usage(_) => Kind::Usage,
            Self::Quality(_) => Kind::Quality,
            Self::Features(e) => user(e.is_user_error()),
            Self::Models(e) => user(e.is_user_error()),
            Self::Backtest(e) => user(e.is_user_error()),
            Self::Infer(e) => user(e.is_user_error()),
            Self::Io(_) | Self::Json(_) | Self::Toml(_) | Self::Failed(_) => Kind::Failure,
            Self::Context { source, .. } => source.kind(),
        }
    }

    /// The message and every cause, `: `-separated (what `anyhow`'s `{:#}` prints).
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }

    /// A usage error.
    pub fn usage(msg: impl Into<String>) -> Self {
        Self::Usage(msg.into())
    }

    /// True when a data-quality check failed somewhere in the chain (the quality stage's own error).
    pub fn is_quality_check(&self) -> bool {
        match self {
            Self::Features(stockcast_features::Error::Quality { .. }) | Self::Quality(_) => true,
            Self::Context { source, .. } => source.is_quality_check(),
            _ => false,
        }
    }
}

/// Adds what a job was doing to an error (as `anyhow::Context` does, into the typed [`Error::Context`]).
pub trait Context<T> {
    /// Wraps the error with `context`.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Wraps the error with the context `f` makes (only on failure).
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::Context { context: context.into(), source: Box::new(e.into()) })
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::Context { context: f().into(), source: Box::new(e.into()) })
    }
}

/// A missing value is a failure of the job, named by the context.
impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| Error::Failed(context.into()))
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.ok_or_else(|| Error::Failed(f().into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_classified_cause_decides_the_kind() {
        let usage = Err::<(), _>(Error::usage("--horizon must be at least 1")).context("reading the config");
        let e = usage.unwrap_err();
        assert_eq!(e.kind(), Kind::Usage);
        assert_eq!(e.to_string(), "reading the config");
        assert_eq!(
            std::error::Error::source(&e).map(ToString::to_string).as_deref(),
            Some("--horizon must be at least 1")
        );
        let io = Err::<(), _>(std::io::Error::other("disk full")).context("writing the run").unwrap_err();
        assert_eq!(io.kind(), Kind::Failure);
        let config = Error::from(stockcast_features::Error::Config { what: "feature spec", message: "bad".into() });
        assert_eq!(config.kind(), Kind::Usage);
        assert_eq!(Error::Quality(Box::new(config)).kind(), Kind::Quality);
    }
}
