#!/usr/bin/env bash
# The demo's setup on a fresh machine (scripts/demo.sh runs it): checks the toolchain, installs the XGBoost library
# (downloaded once into ~/.cache/stockcast), and PostgreSQL's server programs for the demo's database stage when
# they can be installed (root + apt); without them the demo runs every other stage and says so. Idempotent.
# The services only the tests use (Redis, Chromium, Slurm, moto, promtool, buildah) are in scripts/setup-tests.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: '$1' is required: $2" >&2; exit 1; }; }
need cargo "install Rust (rustup) 1.95 or newer: https://rustup.rs"
need cc "install a C compiler (Debian: apt-get install gcc); Polars compiles zstd/lz4 C code"
need python3 "install Python 3 with pip (used once to download the XGBoost library wheel)"
can_apt() { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; }
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    if can_apt; then
        apt-get update -qq >/dev/null || true
        apt-get install -y postgresql >/dev/null
    else
        echo "setup: PostgreSQL's server programs (initdb) are missing and cannot be installed without root: the" \
            "demo skips its database stage (6/6). To add it: sudo apt-get install postgresql, or set DATABASE_URL." >&2
    fi
fi
lib=$(scripts/setup-xgboost.sh)
echo "setup: libxgboost in $lib"
