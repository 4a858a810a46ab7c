//! stockcast: batch ML training and inference for daily stock prices.
//!
//! This crate is the orchestrator: the jobs a user runs are library functions here, with typed inputs and
//! outputs, so a scheduler, a shard runner or a test calls them without spawning the binary:
//!
//! - [`prices::load`]: a file or the Postgres `prices` table through the quality checks;
//! - [`features::dataset`] (over [`stockcast_models::Dataset::from_prices`]): prices → features → model input;
//! - [`backtest::run`]: walk-forward of every configured model → evaluation → a report directory;
//! - [`train::run`]: the nightly job (gate, champion comparison, publish, promote);
//! - [`recommend::run`]: score a day with the promoted versions and store the recommendations;
//! - [`demo::run`]: every stage on the bundled data.
//!
//! The stages themselves live in the member crates (`stockcast-features`, `stockcast-models`,
//! `stockcast-backtest`, `stockcast-infer`). `src/commands/` only parses arguments, calls one of these and prints.
//! Time comes from the [`Clock`] in the [`Ctx`]: only `main` reads the system clock.

pub mod backtest;
pub mod cli;
mod commands;
pub mod config;
pub mod ctx;
pub mod demo;
pub mod features;
pub mod logging;
pub mod prices;
pub mod progress;
pub mod recommend;
pub mod staging;
pub mod train;

pub use ctx::Ctx;
pub use stockcast_features::Clock;

use std::fmt::Write as _;
use std::process::ExitCode;

pub use commands::run;

/// Exit codes of the CLI.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Runtime failure (I/O, internal error).
    pub const FAILURE: u8 = 1;
    /// Bad usage, configuration or input data.
    pub const BAD_INPUT: u8 = 2;
    /// `train`: a data-quality check failed.
    pub const QUALITY: u8 = 3;
}

/// Marks a data-quality failure of `train` (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("data-quality check failed")]
pub struct QualityFailure;

/// An error caused by the user's arguments or configuration (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for an error: 2 when any cause is a user error (bad input, config, usage), 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<QualityFailure>().is_some() {
        return exit::QUALITY;
    }
    for cause in err.chain() {
        if cause.is::<UsageError>() {
            return exit::BAD_INPUT;
        }
        if let Some(e) = cause.downcast_ref::<stockcast_features::Error>() {
            return if e.is_user_error() { exit::BAD_INPUT } else { exit::FAILURE };
        }
        if let Some(e) = cause.downcast_ref::<stockcast_models::Error>() {
            return if e.is_user_error() { exit::BAD_INPUT } else { exit::FAILURE };
        }
        if let Some(e) = cause.downcast_ref::<stockcast_infer::Error>() {
            return if e.is_user_error() { exit::BAD_INPUT } else { exit::FAILURE };
        }
        if let Some(e) = cause.downcast_ref::<stockcast_backtest::Error>() {
            return if e.is_user_error() { exit::BAD_INPUT } else { exit::FAILURE };
        }
    }
    exit::FAILURE
}

/// Prints the error chain (no backtrace) and returns the exit code.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            let mut msg = format!("error: {err}");
            for cause in err.chain().skip(1) {
                let _ = write!(msg, "\n  caused by: {cause}");
            }
            eprintln!("{msg}");
            ExitCode::from(exit_code(&err))
        }
    }
}
