#!/usr/bin/env bash
# Side-by-side benchmarks against peers (see bench/compare.py): bench/compare.sh lstm|features [--runs N] ...
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/compare.py "$@"
