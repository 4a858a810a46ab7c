//! The `stockcast` binary: parse arguments, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = stockcast::cli::Cli::parse();
    stockcast::report(stockcast::run(cli))
}
