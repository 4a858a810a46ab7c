//! Helpers shared by the end-to-end tests: the binary, its output, Parquet files.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use stockcast_features::polars::prelude::*;

/// The repository root (run-time `CARGO_MANIFEST_DIR`, set by cargo and nextest).
pub(crate) fn root() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo and nextest at run time"))
}

/// The `stockcast` binary, run from the repository root with no logging or database settings inherited.
pub(crate) fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stockcast"));
    c.current_dir(root());
    c.env_remove("STOCKCAST_LOG")
        .env_remove("STOCKCAST_LOG_FORMAT")
        .env_remove("DATABASE_URL")
        .env_remove("STOCKCAST_DATABASE_URL");
    c
}

/// Runs the binary with `args`.
pub(crate) fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

/// Lossy UTF-8.
pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A bundled dataset's path.
pub(crate) fn dataset(name: &str) -> String {
    root().join("datasets").join(name).display().to_string()
}

/// A Parquet file as a frame.
pub(crate) fn read_parquet(p: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(p).unwrap()).finish().unwrap()
}
