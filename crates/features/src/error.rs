//! Error type of the features crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading, checking or featurising prices.
///
/// Variants that describe bad user input (files, specs, values) are separated from environment failures
/// (I/O, Polars internals) so the CLI can map them to exit code 2 versus 1 via [`Error::is_user_error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file the user named (data, config, model, index) could not be read: their input is at fault.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A file could not be written (or an internal file read): the environment is at fault.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The input file is structurally unusable (empty, no date column, unknown layout, ...).
    #[error("{path}: {message}")]
    BadInput {
        /// The input file.
        path: PathBuf,
        /// What is wrong, in words.
        message: String,
    },
    /// A data-quality check whose policy is `error` found rows.
    #[error("data quality check `{check}` failed on {count} row(s) (policy: error); first: {first}{hint}")]
    Quality {
        /// The check name.
        check: String,
        /// How many rows were flagged.
        count: usize,
        /// The first flagged row, described with file, line, symbol, date and column.
        first: String,
        /// A hint on how to proceed.
        hint: String,
        /// The quality report up to the failure, when available.
        report: Option<Box<crate::quality::report::QualityReport>>,
    },
    /// The feature spec (or another config) is invalid.
    #[error("invalid {what}: {message}")]
    Config {
        /// Which config (`feature spec`, `quality config`, ...).
        what: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A feature marked `required` in the spec needs a column the data lacks.
    #[error("feature family `{family}` is marked required but the data has no `{column}` column")]
    MissingRequired {
        /// The feature family.
        family: String,
        /// The missing price column.
        column: &'static str,
    },
    /// An output path that would replace something stockcast did not write (a user's directory, the working
    /// directory, the home directory), or a directory with a file output.
    #[error("refusing to write {path}: {reason}")]
    Refused {
        /// The output path as given.
        path: PathBuf,
        /// Why, and what to do instead.
        reason: String,
    },
    /// An error raised inside Polars.
    #[error("polars: {0}")]
    Polars(#[from] polars::error::PolarsError),
    /// An object store (s3://, gs://, az://) refused or failed a request.
    #[error("{url}: {message}")]
    Storage {
        /// The object's URL.
        url: String,
        /// What went wrong.
        message: String,
        /// True when the user's URL or credentials are at fault (a missing object, a bad URL, access denied).
        user: bool,
    },
}

impl Error {
    /// True when the error is caused by the user's input or configuration (exit code 2), false when it is a
    /// runtime/environment failure (exit code 1).
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::BadInput { .. }
            | Self::Quality { .. }
            | Self::Config { .. }
            | Self::MissingRequired { .. }
            | Self::Refused { .. }
            | Self::Read { .. } => true,
            Self::Storage { user, .. } => *user,
            Self::Io { .. } | Self::Polars(_) => false,
        }
    }

    /// True when the error is a failed data-quality check (the nightly job maps this to its own exit code).
    pub fn is_quality_failure(&self) -> bool {
        matches!(self, Self::Quality { .. })
    }

    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Read { path: path.into(), source }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub(crate) fn bad_input(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::BadInput { path: path.into(), message: message.into() }
    }

    pub(crate) fn config(what: &'static str, message: impl Into<String>) -> Self {
        Self::Config { what, message: message.into() }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
