#!/usr/bin/env bash
# Links the built `stockcast` binary into a directory on the PATH: $STOCKCAST_BIN_DIR, else ~/.cargo/bin (where
# rustup puts cargo, so it is on the PATH of anyone who built this), else ~/.local/bin. The binary finds libxgboost
# through its RUNPATH (the library stays in ~/.cache/stockcast); for a copy that runs anywhere, see scripts/image.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-$HOME/.cache/stockcast-target}/release/stockcast"
[ -x "$bin" ] || { echo "install: $bin is not built (cargo build --release)" >&2; exit 1; }
dir="${STOCKCAST_BIN_DIR:-}"
if [ -z "$dir" ]; then
    if [ -d "$HOME/.cargo/bin" ]; then dir="$HOME/.cargo/bin"; else dir="$HOME/.local/bin"; fi
fi
mkdir -p "$dir"
ln -sf "$bin" "$dir/stockcast"
case ":$PATH:" in
    *":$dir:"*) echo "install: stockcast -> $bin (in $dir, on the PATH)" ;;
    *) echo "install: stockcast -> $bin (in $dir, which is NOT on the PATH: export PATH=\"$dir:\$PATH\")" ;;
esac
