#!/usr/bin/env bash
# The demo command (README quickstart): the lean setup (toolchain check, libxgboost; PostgreSQL when it can be
# installed), one release build, `stockcast` linked onto the PATH, then `stockcast demo` on the bundled data.
# Without PostgreSQL the demo runs stages 1-5 and says how to add the database stage.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stockcast-target}"
scripts/setup.sh >&2
# The whole workspace's feature set, so the test command afterwards reuses every compiled dependency.
cargo build --workspace --release --locked --bins --quiet >&2
scripts/install.sh >&2
"$CARGO_TARGET_DIR/release/stockcast" demo "$@"
