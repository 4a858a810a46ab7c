//! Error type of the models crate.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, fitting, predicting, saving or loading a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The model configuration is invalid.
    #[error("invalid model config: {0}")]
    Config(String),
    /// The data cannot be used for this model (too few rows, no labels, missing features...).
    #[error("{0}")]
    Data(String),
    /// A saved model is missing files, was altered or truncated, or cannot be parsed.
    #[error("model in {dir}: {message}")]
    Artifact {
        /// The model directory.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The model was trained on features from another spec than the data's.
    #[error(
        "feature spec mismatch: the model was trained with spec {model} but the data was built with spec {data}; \
         rebuild the features with the model's spec.toml"
    )]
    SpecMismatch {
        /// The model's spec hash.
        model: String,
        /// The data's spec hash.
        data: String,
    },
    /// An error reported by libxgboost.
    #[error("xgboost: {0}")]
    Xgboost(String),
    /// A linfa fitting error.
    #[error("linear model: {0}")]
    Linfa(String),
    /// An error from the features crate.
    #[error(transparent)]
    Features(#[from] stockcast_features::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub(crate) fn artifact(dir: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Artifact { dir: dir.into(), message: message.into() }
    }

    /// True when the user's config, data or files are at fault (exit code 2) rather than the environment.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Config(_) | Self::Data(_) | Self::Artifact { .. } | Self::SpecMismatch { .. } => true,
            Self::Features(e) => e.is_user_error(),
            Self::Io { .. } | Self::Xgboost(_) | Self::Linfa(_) => false,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
