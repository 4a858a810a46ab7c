#!/usr/bin/env bash
# A desk's own data at scale: a walk-forward over 5,000 synthetic symbols x 2,520 days with a point-in-time
# universe and a quarterly factor file (lag 45 days), reading the prices (a) from one Parquet file and (b) from a
# folder of 5,000 per-symbol Parquet files. Runs them alternately ROUNDS times (default 3) and prints each run's
# wall time and peak RSS (/usr/bin/time), then the medians and the folder/file ratios.
#
#   bench/own_data_scale.sh [WORK_DIR] [ROUNDS]     (needs python3 with polars; builds nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
W="${1:-/tmp/stockcast-own-data-scale}"
ROUNDS="${2:-3}"
BIN="${STOCKCAST:-${CARGO_TARGET_DIR:-$HOME/.cache/stockcast-target}/release/stockcast}"
mkdir -p "$W"
[ -f "$W/synth.parquet" ] || "$BIN" -q datasets synth --symbols 5000 --days 2520 --seed 42 --out "$W/synth.parquet"
[ -f "$W/d/universe.txt" ] || python3 bench/own_data_scale.py "$W/synth.parquet" "$W/d" --seed 7
cat > "$W/spec.toml" <<'SPEC'
version = 1
[label]
horizon = 5
[[features]]
family = "returns"
windows = [5, 20]
[[features]]
family = "factor"
of = ["book_value"]
[[features]]
family = "cs_rank"
of = ["ret_20", "f_book_value"]
SPEC
for kind in file folder; do
    if [ "$kind" = file ]; then prices="$W/d/panel.parquet"; else prices="$W/d/folder"; fi
    cat > "$W/$kind.toml" <<CFG
name = "scale-$kind"
seed = 7
[data]
prices = "$prices"
universe = "$W/d/universe.txt"
spec = "$W/spec.toml"
[[data.factors]]
file = "$W/d/book.csv"
lag_days = 45
max_age_days = 200
[split]
min_train_days = 1260
test_days = 630
[[models]]
name = "linear"
model = { kind = "linear", alpha = 0.01 }
[strategy]
kind = "top_k"
k = 50
rebalance_days = 5
CFG
done
for r in $(seq 1 "$ROUNDS"); do
    for kind in file folder; do
        /usr/bin/time -f "$kind %e s %M KB" -o "$W/time.txt" \
            "$BIN" -q backtest --config "$W/$kind.toml" --out "$W/run-$kind" >/dev/null
        cat "$W/time.txt" | tee -a "$W/times-all.txt"
        echo "$kind $(jq -r '.models.linear.total_return' "$W/run-$kind/report.json") total return, data hash $(jq -r '.data.data_hash' "$W/run-$kind/report.json")"
    done
done
python3 - "$W/times-all.txt" "$ROUNDS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()][-2 * int(sys.argv[2]):]
med = {k: (statistics.median(float(r[1]) for r in rows if r[0] == k), statistics.median(int(r[3]) for r in rows if r[0] == k)) for k in ("file", "folder")}
for k, (t, m) in med.items():
    print(f"median {k:6s} {t:7.1f} s  {m / 1e6:6.2f} GB peak RSS")
print(f"folder / file: time {med['folder'][0] / med['file'][0]:.2f}x, memory {med['folder'][1] / med['file'][1]:.2f}x")
PY
