#!/usr/bin/env bash
# The Python package (python/): builds its wheel with maturin (abi3, Python ≥ 3.11, libxgboost and libgomp bundled
# by maturin's auditwheel step) and installs it into a venv, $STOCKCAST_PYENV (default ~/.cache/stockcast/pyenv).
#   bash scripts/python.sh          build + install; then `~/.cache/stockcast/pyenv/bin/python -c "import stockcast"`
#   bash scripts/python.sh --test   then pytest python/tests (the CLI comparisons, the notebook, a clean-venv install)
# The wheel lands in $CARGO_TARGET_DIR/wheels; it reuses the workspace's compiled dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stockcast-target}"
venv="${STOCKCAST_PYENV:-$HOME/.cache/stockcast/pyenv}"
python3 -c 'import sys; assert sys.version_info >= (3, 11), sys.version' 2>/dev/null \
    || { echo "python.sh: Python 3.11 or newer is required for the package" >&2; exit 1; }
[ -x "$venv/bin/python" ] || python3 -m venv "$venv" \
    || { echo "python.sh: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
"$venv/bin/pip" install --quiet --disable-pip-version-check -r python/requirements-test.txt
wheels="$CARGO_TARGET_DIR/wheels"
# Only the wheels this script builds are removed, nothing else in that directory.
rm -f "$wheels"/stockcast-*.whl
# maturin's repair step rewrites the library it bundles from in the target directory (its libxgboost entry gets a
# hashed name); relinking the small extension crate gives it a clean one every time.
touch python/src/lib.rs
PATH="$venv/bin:$PATH" maturin build --release --locked --quiet -m python/Cargo.toml -o "$wheels" >&2
wheel=$(ls "$wheels"/stockcast-*.whl)
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"
echo "python.sh: installed $(basename "$wheel") ($(du -h "$wheel" | cut -f1)) into $venv" >&2
if [ "${1:-}" = "--test" ]; then
    shift
    # From outside python/, so `import stockcast` is the installed wheel, never the source tree.
    cd /
    STOCKCAST_WHEEL="$wheel" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}" \
        "$venv/bin/python" -m pytest -q -p no:cacheprovider "$OLDPWD/python/tests" "$@"
fi
