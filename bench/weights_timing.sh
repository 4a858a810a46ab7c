#!/usr/bin/env bash
# Portfolio weighting cost: a top-100 momentum walk-forward, weekly rebalances, on 500 synthetic symbols x 2,520
# days, with equal weights and with WEIGHTS (default mean_variance: Ledoit-Wolf over 63 days + a Clarabel QP per
# rebalance, max_weight 0.05), run alternately ROUNDS times (default 3). Prints each run's wall time and the
# weighting seconds report.json records, then the medians and the ratio.
#
#   bench/weights_timing.sh [WORK_DIR] [ROUNDS] [WEIGHTS]     (builds nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
W="${1:-/tmp/stockcast-weights-timing}"
ROUNDS="${2:-3}"
WEIGHTS="${3:-mean_variance}"
BIN="${STOCKCAST:-${CARGO_TARGET_DIR:-$HOME/.cache/stockcast-target}/release/stockcast}"
mkdir -p "$W"
[ -f "$W/synth.parquet" ] || "$BIN" -q datasets synth --symbols 500 --days 2520 --seed 7 --out "$W/synth.parquet"
for weights in equal "$WEIGHTS"; do
  cat > "$W/$weights.toml" <<CFG
name = "weights-$weights"
seed = 1
[data]
prices = "$W/synth.parquet"
horizon = 5
[split]
min_train_days = 504
test_days = 252
[[models]]
name = "momentum"
model = { kind = "rule", rule = "momentum", lookback = 60 }
[strategy]
kind = "top_k"
k = 100
rebalance_days = 5
commission_bps = 10
slippage_bps = 5
weights = "$weights"
max_weight = 0.05
risk_aversion = 10
CFG
done
declare -A times
for r in $(seq "$ROUNDS"); do
  for weights in equal "$WEIGHTS"; do
    start=$(date +%s.%N)
    "$BIN" -q backtest --config "$W/$weights.toml" --out "$W/out-$weights" > /dev/null
    t=$(echo "$(date +%s.%N) - $start" | bc)
    times[$weights]="${times[$weights]:-} $t"
    ws=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['models']['momentum']['weights_seconds'], 2))" "$W/out-$weights/report.json")
    echo "round $r  $weights: ${t} s (weighting ${ws} s)"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
e=$(echo "${times[equal]}" | median)
m=$(echo "${times[$WEIGHTS]}" | median)
echo "median: equal ${e} s, $WEIGHTS ${m} s, ratio $(echo "scale=3; $m / $e" | bc)"
