#!/usr/bin/env bash
# Installs the real XGBoost C library (libxgboost 3.4.1, CPU build) from the PyPI wheel `xgboost-cpu` into a cache
# directory, once. The wheel is downloaded, not installed, so any Python ≥ 3.8 with pip works. The library keeps
# the wheel's layout: xgboost/lib/libxgboost.so finds its bundled libgomp through its own RPATH.
# Prints the library directory. Override the location with STOCKCAST_XGBOOST_DIR.
set -euo pipefail
version=3.4.1
dir="${STOCKCAST_XGBOOST_DIR:-$HOME/.cache/stockcast/xgboost-cpu-$version}"
lib="$dir/xgboost/lib"
if [ ! -f "$lib/libxgboost.so" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --platform manylinux_2_28_x86_64 "xgboost-cpu==$version" -d "$tmp" >&2
    mkdir -p "$dir.partial"
    python3 -m zipfile -e "$tmp"/xgboost_cpu-"$version"-*.whl "$dir.partial"
    rm -rf "$dir" && mv "$dir.partial" "$dir"
fi
# The library's soname is libxgboost.so.3: binaries linked against it look for that name.
ln -sf libxgboost.so "$lib/libxgboost.so.3"
echo "$lib"
