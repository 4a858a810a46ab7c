//! Every example in the README and the guides runs as printed: each fenced `sh` block (not marked `sh no-run`) of
//! a file is run in order by bash (`-euo pipefail`), with the binary under test as `stockcast` on the PATH, in a
//! scratch directory holding copies of `datasets/` and `configs/` (so the examples' relative paths work and
//! nothing they write lands in the checkout). A failing command fails the test with the block and its output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

/// The runnable `sh` blocks of a Markdown file, with the line each starts on.
fn blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        if let Some((start, mut body)) = current.take() {
            if line.starts_with("```") {
                out.push((start, body));
            } else {
                body.push_str(line);
                body.push('\n');
                current = Some((start, body));
            }
        } else if line.trim_end() == "```sh" {
            current = Some((i + 1, String::new()));
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-r").arg(from).arg(to).status().unwrap();
    assert!(status.success(), "cp -r {} {}", from.display(), to.display());
}

/// Runs the runnable blocks of `file` (relative to the repository root) in order; returns how many ran. Each of
/// `folders` (an absolute path the guide uses for its outputs, e.g. `/tmp/g`) is replaced by a folder inside the
/// scratch directory, so a test run never writes to, or removes, anything outside it.
fn run_examples(file: &str, folders: &[&str]) -> usize {
    let text = std::fs::read_to_string(common::root().join(file)).unwrap();
    let blocks = blocks(&text);
    let scratch = tempfile::tempdir().unwrap();
    copy_dir(&common::root().join("datasets"), &scratch.path().join("datasets"));
    copy_dir(&common::root().join("configs"), &scratch.path().join("configs"));
    let bin_dir = scratch.path().join(".bin");
    std::fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_stockcast"), bin_dir.join("stockcast")).unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    for (line, body) in &blocks {
        let body = folders.iter().enumerate().fold(body.clone(), |b, (i, f)| {
            b.replace(f, &scratch.path().join(format!("folder{i}")).display().to_string())
        });
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &body])
            .current_dir(scratch.path())
            .env("PATH", &path)
            .env("OMP_WAIT_POLICY", "passive")
            .env_remove("DATABASE_URL")
            .env_remove("STOCKCAST_DATABASE_URL")
            .env_remove("STOCKCAST_LOG")
            .env_remove("STOCKCAST_LOG_FORMAT")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file} line {line}: the example failed ({}):\n{body}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            common::text(&out.stdout),
            common::text(&out.stderr)
        );
    }
    blocks.len()
}

#[test]
fn the_readme_examples_run_as_printed() {
    assert!(run_examples("README.md", &[]) >= 1);
}

#[test]
fn the_cli_models_and_backtest_guides_run_as_printed() {
    for file in ["docs/cli.md", "docs/models.md", "docs/backtests.md"] {
        assert!(run_examples(file, &[]) >= 1, "{file} has no runnable example");
    }
}

#[test]
fn the_registry_and_scale_out_guides_run_as_printed() {
    for file in ["docs/registry.md", "docs/scale-out.md"] {
        assert!(run_examples(file, &[]) >= 1, "{file} has no runnable example");
    }
}

#[test]
fn the_own_data_guide_runs_as_printed() {
    // Its examples share /tmp/g, the guide's folder for a reader's outputs: here a folder of the test's own.
    assert!(run_examples("docs/own-data.md", &["/tmp/g"]) >= 5);
}

#[test]
fn every_guide_is_linked_from_the_readme_and_every_sh_block_is_runnable_or_marked() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    assert!(readme.len() <= 25 * 1024, "README.md is {} bytes", readme.len());
    let mut tested = 0;
    for entry in std::fs::read_dir(common::root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("md") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(readme.contains(&format!("(docs/{name})")), "README.md does not link docs/{name}");
        let text = std::fs::read_to_string(&path).unwrap();
        // A block is either runnable (```sh, run by a test above) or says why not (```sh no-run).
        for line in text.lines().filter(|l| l.starts_with("```sh")) {
            assert!(line == "```sh" || line == "```sh no-run", "docs/{name}: {line}");
        }
        tested += usize::from(!blocks(&text).is_empty());
    }
    // The guides with runnable examples are the ones the tests above run.
    assert_eq!(tested, 6, "a guide gained or lost runnable examples: add it to a test above");
}
