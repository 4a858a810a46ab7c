//! Error type of the infer crate.

/// Everything that can go wrong talking to Postgres or serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database could not be reached or refused the connection.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Input data that cannot be stored (names the symbol, date or field).
    #[error("{0}")]
    Data(String),
    /// An error from the features crate.
    #[error(transparent)]
    Features(#[from] stockcast_features::Error),
    /// A socket or task error of the server.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An error from the models crate (a missing or damaged model version).
    #[error(transparent)]
    Model(#[from] stockcast_models::Error),
    /// The caller gave up (its request timed out or its client went away); the work stopped at a checkpoint.
    #[error("cancelled: the request that asked for this work went away")]
    Cancelled,
}

impl Error {
    /// True when the input is at fault (exit code 2).
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Data(_) => true,
            Self::Features(e) => e.is_user_error(),
            Self::Model(e) => e.is_user_error(),
            Self::Unavailable(_) | Self::Database(_) | Self::Migrate(_) | Self::Io(_) | Self::Cancelled => false,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
