#!/usr/bin/env bash
# Scaling curve: features, walk-forward and evaluation time and the run's peak memory at 500 / 1,000 / 2,000 /
# 5,000 symbols x 2,520 and 5,040 synthetic days, one `stockcast-bench backtest` per size (MODELS, default linear;
# yearly folds on a rolling TRAIN_DAYS window, default 504, so each fit reads the same span at every history
# length). Writes OUT (default docs/scaling.csv) and the chart beside it (bench/scaling_chart.py, which fits the
# growth exponents and prints them).
#
#   bench/scaling.sh [WORK_DIR] [OUT]     env: SYMBOLS, DAYS, MODELS, TRAIN_DAYS, STOCKCAST_BENCH (builds nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
W="${1:-/tmp/stockcast-scaling}"
OUT="${2:-docs/scaling.csv}"
SYMBOLS="${SYMBOLS:-500 1000 2000 5000}"
DAYS="${DAYS:-2520 5040}"
MODELS="${MODELS:-linear}"
TRAIN_DAYS="${TRAIN_DAYS:-504}"
BIN="${STOCKCAST_BENCH:-${CARGO_TARGET_DIR:-$HOME/.cache/stockcast-target}/release/stockcast-bench}"
mkdir -p "$W"
tmp="$OUT.tmp"
echo "symbols,days,rows,folds,features_s,walk_forward_s,evaluate_s,backtest_s,peak_rss_mb" > "$tmp"
for days in $DAYS; do
  for symbols in $SYMBOLS; do
    log="$W/$symbols-$days.log"
    "$BIN" -q backtest --symbols "$symbols" --days "$days" --models "$MODELS" --jobs 2 \
      --train-days "$TRAIN_DAYS" --out "$W/$symbols-$days" > "$log"
    rm -rf "$W/$symbols-$days"
    python3 - "$log" "$symbols" "$days" >> "$tmp" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
symbols, days = int(sys.argv[2]), int(sys.argv[3])
head = re.search(r"bench backtest: .* (\d+) folds,.* backtest ([\d.]+) s, peak RSS (\d+) MB", text)
stage = lambda name: float(re.search(rf"stage {name}\s+([\d.]+) s", text).group(1))
print(f"{symbols},{days},{symbols * days},{head.group(1)},{stage('features')},{stage('walk_forward')},"
      f"{stage('evaluate')},{head.group(2)},{head.group(3)}")
PY
    tail -1 "$tmp"
  done
done
mv "$tmp" "$OUT"
python3 bench/scaling_chart.py "$OUT" "${OUT%.csv}.png"
