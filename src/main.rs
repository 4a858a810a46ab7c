//! The `stockcast` binary: parse arguments, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

/// Polars allocates and frees many column-sized buffers; glibc returns them to the OS and every new one is
/// faulted in page by page (a third of the feature time on 5 M rows). mimalloc keeps them. Built without its
/// transparent-huge-page advice (the `no_thp` feature, see the workspace manifest).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's option setter, from the static library the `mimalloc` crate links (its typed bindings sit behind an
// `extended` feature whose dependency this offline build does not have).
#[allow(unsafe_code)]
unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in the bundled mimalloc 2.3's `mi_option_t` (`c_src/mimalloc/v2/include/mimalloc.h`): how
/// many milliseconds freed memory waits before it is returned to the OS (10 by default; -1: never).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// `stockcast features` is one pass that ends with the process: memory it frees is kept for its next column instead
/// of being returned to the OS and faulted in again page by page. On 5 M rows this halves the page faults
/// (690-770k -> 380-400k) and cuts the system time from 2.4-3.4 s to 1.8-2.1 s, for ~10 % more peak RSS (1.45 ->
/// 1.6 GB). Commands that hold memory budgets (backtests) or run for days (the server) keep the default.
fn keep_freed_memory(cli: &stockcast::cli::Cli) {
    if matches!(cli.command, stockcast::cli::Command::Features(_)) {
        // SAFETY: sets an integer option; mimalloc reads it at each purge.
        #[allow(unsafe_code)]
        unsafe {
            mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

fn main() -> ExitCode {
    let cli = stockcast::cli::Cli::parse();
    keep_freed_memory(&cli);
    // The only place the engine's time comes from: everything below reads this clock.
    stockcast::report(stockcast::run(cli, stockcast::Clock::system()))
}
