#!/usr/bin/env bash
# The test command (README): builds the workspace once in the release profile and runs every test.
# Uses a shared cargo target directory outside the clone so repeated runs are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stockcast-target}"
scripts/setup-tests.sh >&2   # idempotent: the demo's setup + the services the tests start
# XGBoost/OpenMP threads must not spin-wait while the machine is shared by parallel tests.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
status=0
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --release --locked --no-fail-fast "$@" || status=$?
else
    cargo test --workspace --release --locked --no-fail-fast "$@" || status=$?
fi
# The Python package: its wheel built and installed, pytest (CLI equality, the notebook, a clean-venv install).
# Filtered runs (arguments given) are for the Rust tests only.
if [ $# -eq 0 ]; then
    scripts/python.sh --test || status=$?
fi
exit "$status"
