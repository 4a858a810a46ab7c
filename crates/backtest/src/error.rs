//! Error type of the backtest crate.

use std::path::PathBuf;

/// Everything that can go wrong in a walk-forward run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backtest configuration is invalid.
    #[error("invalid backtest config: {0}")]
    Config(String),
    /// The data cannot support the run (too few dates, no predictions, missing prices...).
    #[error("{0}")]
    Data(String),
    /// An output file could not be written (the environment; input files that cannot be read are
    /// [`stockcast_features::Error::Read`]).
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Fitting or predicting a model failed.
    #[error("model {model}, fold {fold}: {source}")]
    Model {
        /// The model's name in the run.
        model: String,
        /// The fold.
        fold: usize,
        /// The model error.
        source: stockcast_models::Error,
    },
    /// An error from the features crate.
    #[error(transparent)]
    Features(#[from] stockcast_features::Error),
}

impl Error {
    pub(crate) fn file(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Self::File { path: path.into(), message: message.to_string() }
    }

    /// True when the user's config or data are at fault (exit code 2).
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Config(_) | Self::Data(_) => true,
            Self::File { .. } => false,
            Self::Model { source, .. } => source.is_user_error(),
            Self::Features(e) => e.is_user_error(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
