//! stockcast's command line: parse the arguments ([`cli`]), call one job of [`stockcast_pipeline`], print its
//! result, and map its error to an exit code ([`exit_code`]). The jobs, their inputs, outputs and errors live in
//! `stockcast-pipeline`; the stages in the member crates. [`progress::Terminal`] is how a job reports on the
//! terminal; time comes from the clock `main` reads, the only place the system clock is read.

pub mod cli;
mod commands;
pub mod logging;
pub mod progress;

pub use stockcast_pipeline::{Clock, Ctx};

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

/// An error caused by the user's arguments (exit code 2), for what the command line checks itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for an error: 3 for a failed data-quality check of the nightly job, 2 when the first classified
/// cause is a user error (bad input, config, usage), 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    use stockcast_pipeline::Kind;
    let user = |yes: bool| if yes { exit::BAD_INPUT } else { exit::FAILURE };
    for cause in err.chain() {
        if cause.is::<UsageError>() {
            return exit::BAD_INPUT;
        }
        if let Some(e) = cause.downcast_ref::<stockcast_pipeline::Error>() {
            return match e.kind() {
                Kind::Usage => exit::BAD_INPUT,
                Kind::Quality => exit::QUALITY,
                Kind::Failure => exit::FAILURE,
            };
        }
        if let Some(e) = cause.downcast_ref::<stockcast_features::Error>() {
            return user(e.is_user_error());
        }
        if let Some(e) = cause.downcast_ref::<stockcast_models::Error>() {
            return user(e.is_user_error());
        }
        if let Some(e) = cause.downcast_ref::<stockcast_infer::Error>() {
            return user(e.is_user_error());
        }
        if let Some(e) = cause.downcast_ref::<stockcast_backtest::Error>() {
            return user(e.is_user_error());
        }
    }
    exit::FAILURE
}

/// An error and its causes as the CLI prints them (after `error: `): one `caused by:` line per cause, leaving out
/// a cause whose text the line before already holds (an error that prints its source, e.g. "cannot read F: No
/// such file or directory", is not followed by "caused by: No such file or directory").
pub fn error_text(err: &anyhow::Error) -> String {
    let mut msg = err.to_string();
    let mut last = msg.clone();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !last.contains(&text) {
            let _ = write!(msg, "\n  caused by: {text}");
            last = text;
        }
    }
    msg
}

/// Prints the error chain (no backtrace) and returns the exit code.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            eprintln!("error: {}", error_text(&err));
            ExitCode::from(exit_code(&err))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockcast_pipeline::{Context as _, Error};

    #[test]
    fn a_jobs_error_kind_is_its_exit_code_through_any_context() {
        let code = |e: Error| exit_code(&anyhow::Error::from(e).context("the command"));
        assert_eq!(code(Error::usage("--horizon must be at least 1")), exit::BAD_INPUT);
        let quality = Error::from(stockcast_features::Error::Config { what: "feature spec", message: "bad".into() });
        assert_eq!(code(Error::Quality(Box::new(quality))), exit::QUALITY);
        let io: Result<(), _> = Err(std::io::Error::other("disk full"));
        assert_eq!(code(io.context("writing the run").unwrap_err()), exit::FAILURE);
        assert_eq!(exit_code(&anyhow::Error::from(UsageError("--keep 0".into()))), exit::BAD_INPUT);
    }
}
