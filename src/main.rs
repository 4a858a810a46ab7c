//! The `stockcast` binary: parse arguments, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

/// Polars allocates and frees many column-sized buffers; glibc returns them to the OS and every new one is
/// faulted in page by page (a third of the feature time on 5 M rows). mimalloc keeps them. Built without its
/// transparent-huge-page advice (the `no_thp` feature, see the workspace manifest).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = stockcast::cli::Cli::parse();
    // The only place the engine's time comes from: everything below reads this clock.
    stockcast::report(stockcast::run(cli, stockcast::Clock::system()))
}
