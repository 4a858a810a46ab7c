#!/usr/bin/env bash
# A merge that streams: a top-50 momentum sweep of SWEEP lookbacks over SYMBOLS x DAYS synthetic prices (default
# 9 x 5,000 x 5,040: 204 M out-of-sample prediction rows), planned, run as SHARDS shard processes, then merged;
# prints each merge's time and peak memory (GNU time) and the rows it merged. With OLD (a stockcast binary of an
# earlier build), the same shards are merged by it too, alternating, ROUNDS times each (default 1), and both
# run directories are compared (report.json but timings and the resolved config, predictions, equity, trades).
#
#   bench/merge_scale.sh [WORK_DIR]     env: SYMBOLS, DAYS, SWEEP, SHARDS, ROUNDS, OLD, STOCKCAST, STOCKCAST_BENCH
set -euo pipefail
cd "$(dirname "$0")/.."
W="${1:-/tmp/stockcast-merge}"
SYMBOLS="${SYMBOLS:-5000}"
DAYS="${DAYS:-5040}"
SWEEP="${SWEEP:-5, 10, 20, 40, 60, 90, 120, 180, 250}"
SHARDS="${SHARDS:-4}"
ROUNDS="${ROUNDS:-1}"
T="${CARGO_TARGET_DIR:-$HOME/.cache/stockcast-target}/release"
NEW="${STOCKCAST:-$T/stockcast}"
BENCH="${STOCKCAST_BENCH:-$T/stockcast-bench}"
mkdir -p "$W"
# The bench writes the synthetic prices and a one-model momentum config (and runs it once).
"$BENCH" -q backtest --models momentum --symbols "$SYMBOLS" --days "$DAYS" --out "$W/gen" > /dev/null
rm -rf "$W/gen/run"
sed -e 's/^jobs = .*/jobs = 2/' "$W/gen/backtest.toml" > "$W/sweep.toml"
printf '\n[sweep.momentum]\nlookback = [%s]\n' "$SWEEP" >> "$W/sweep.toml"
rm -rf "$W/run"
"$NEW" -q backtest --config "$W/sweep.toml" --out "$W/run" --plan
for ((i = 0; i < SHARDS; i++)); do
  /usr/bin/time -f "shard $i/$SHARDS: %e s, peak %M KB" "$NEW" -q backtest --config "$W/sweep.toml" --out "$W/run" \
    --shard "$i/$SHARDS" > /dev/null
done
merge() { # BINARY DIR LABEL
  /usr/bin/time -f "$3 merge: %e s, peak %M KB" "$1" -q backtest merge --out "$2" > /dev/null
  python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['timings_seconds']; \
print(f\"  {int(t['merge_rows']):,} rows\" if 'merge_rows' in t else '', {k: round(v, 1) for k, v in t.items() \
if k in ('merge_read', 'evaluate')})" "$2/report.json"
}
if [ -n "${OLD:-}" ]; then
  rm -rf "$W/run-old" && cp -r "$W/run" "$W/run-old"
fi
for ((r = 0; r < ROUNDS; r++)); do
  merge "$NEW" "$W/run" new
  if [ -n "${OLD:-}" ]; then merge "$OLD" "$W/run-old" old; fi
done
if [ -n "${OLD:-}" ]; then
  python3 - "$W/run-old" "$W/run" <<'PY'
import filecmp, json, sys
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if "timing" not in k and "seconds" not in k}
    return [strip(x) for x in v] if isinstance(v, list) else v
a, b = sys.argv[1], sys.argv[2]
same = strip(json.load(open(f"{a}/report.json"))) == strip(json.load(open(f"{b}/report.json")))
print("report.json but timings identical:", same)
for f in ["equity.parquet", "trades.csv"]:
    print(f, "byte-identical:", filecmp.cmp(f"{a}/{f}", f"{b}/{f}", shallow=False))
try:
    import polars as pl
    print("predictions.parquet rows equal:", pl.read_parquet(f"{a}/predictions.parquet").equals(pl.read_parquet(f"{b}/predictions.parquet")))
except ImportError:
    print("predictions.parquet: polars not installed, not compared")
PY
fi
