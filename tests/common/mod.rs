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
    // A test run inside a scheduler's job must not shard the commands it starts.
    for k in ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "JOB_COMPLETION_INDEX"] {
        c.env_remove(k);
    }
    c.env_remove("STOCKCAST_SHARDS");
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

/// `configs/backtest.toml` (every model kind) written to `dir` with absolute paths, yearly folds over three years
/// instead of one, and `extra` appended (e.g. a `[sweep]`).
pub(crate) fn every_kind_config(dir: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("configs/backtest.toml")).unwrap();
    let root = root().display().to_string();
    let text = text
        .replace("\"datasets/", &format!("\"{root}/datasets/"))
        .replace("\"configs/", &format!("\"{root}/configs/"))
        .replace("test_days = 252", "test_days = 756");
    let path = dir.join("every_kind.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    path
}

/// `report.json` of a run without what differs between two runs of the same work: stage timings, fit, predict and
/// simulation seconds, and the recorded configuration (a merged run records it resolved, with every model inline).
pub(crate) fn report_results(run: &Path) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for k in [
                    "timings_seconds",
                    "fit_seconds",
                    "predict_seconds",
                    "simulate_seconds",
                    "weights_seconds",
                    "config",
                ] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    strip(&mut v);
    v
}
