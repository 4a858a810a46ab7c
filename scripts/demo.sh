#!/usr/bin/env bash
# The demo command (README): one-time setup (idempotent), then `stockcast demo` on the bundled data.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stockcast-target}"
scripts/setup.sh >&2
cargo run --release --locked --quiet -- demo "$@"
