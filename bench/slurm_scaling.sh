#!/usr/bin/env bash
# One process vs a Slurm array, on this machine, same data and config, alternately, ROUNDS times each:
#   single: `stockcast backtest --jobs CPUS` (every core in one process)
#   slurm:  deploy/slurm/submit.sh with SHARDS array tasks of 1 CPU each (bound by task/affinity), then the merge
# on the `bench backtest` panel (SYMBOLS x DAYS synthetic, every model kind, 8 yearly folds). Prints the wall times,
# their medians, the speedup, and per shard: features (each shard builds the whole panel's features), its tasks'
# walk-forward, and the rest of its wall time (process start, loading, writing). Not part of the test command;
# needs scripts/slurm-local.sh (slurm-wlm). Usage: bench/slurm_scaling.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
bin="${STOCKCAST_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/stockcast-target}/release/stockcast}"
symbols="${SYMBOLS:-500}" days="${DAYS:-2520}" shards="${SHARDS:-4}" rounds="${ROUNDS:-3}"
cpus="$(nproc)"
work="$(mkdir -p "${1:-/tmp/stockcast-slurm-bench}" && cd "${1:-/tmp/stockcast-slurm-bench}" && pwd)"
rm -rf "$work"/{slurm,runs} && mkdir -p "$work/runs"

"$bin" -q datasets synth --symbols "$symbols" --days "$days" --seed 42 --out "$work/prices.parquet"
# The bench backtest's config (crates/bench/src/bench.rs BENCH_MODELS), XGBoost limited to one thread per fit.
cat >"$work/backtest.toml" <<TOML
name = "scaling"
seed = 42
[data]
prices = "$work/prices.parquet"
horizon = 5
[split]
min_train_days = 504
test_days = 252
valid_days = 63
[[models]]
name = "gbm"
model = { kind = "gbm", rounds = 100, eta = 0.1, max_depth = 6, subsample = 0.8, colsample_bytree = 0.8, min_child_weight = 50.0, early_stopping_rounds = 10, nthread = 1 }
[[models]]
name = "lstm"
model = { kind = "lstm", lookback = 20, hidden = 32, epochs = 2, batch_size = 512, max_train_rows = 50000, patience = 0 }
[[models]]
name = "linear"
model = { kind = "linear", alpha = 0.001 }
[[models]]
name = "forecast"
model = { kind = "forecast", method = "prophet", horizon = 5, history_days = 504 }
[[models]]
name = "momentum"
model = { kind = "rule", rule = "momentum", lookback = 60 }
[[models]]
name = "ensemble"
model = { kind = "ensemble", members = [{ kind = "linear", alpha = 0.001 }, { kind = "rule", rule = "momentum", lookback = 60 }] }
[strategy]
kind = "top_k"
k = 50
n_drop = 10
rebalance_days = 5
commission_bps = 10
slippage_bps = 5
TOML

eval "$(scripts/slurm-local.sh start "$work/slurm")"
trap 'scripts/slurm-local.sh stop "$work/slurm"' EXIT

state() { scontrol show job -o "$1" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -1; }
now() { date +%s.%N; }
single=() slurm=()
for r in $(seq "$rounds"); do
    t0=$(now)
    "$bin" -q backtest --config "$work/backtest.toml" --out "$work/runs/single-$r" --jobs "$cpus" >/dev/null
    single+=("$(echo "$(now) - $t0" | bc)")
    t0=$(now)
    read -r array merge < <(STOCKCAST_BIN="$bin" deploy/slurm/submit.sh "$work/backtest.toml" "$work/runs/slurm-$r" "$shards")
    while true; do
        s="$(state "$merge")"
        case "$s" in
            COMPLETED) break ;;
            PENDING|RUNNING|CONFIGURING|COMPLETING) sleep 0.5 ;;
            *) echo "merge job $merge: $s" >&2; tail -5 "$work/runs/slurm-$r/logs/"*.out >&2; exit 1 ;;
        esac
    done
    slurm+=("$(echo "$(now) - $t0" | bc)")
    cmp -s "$work/runs/single-$r/predictions.parquet" "$work/runs/slurm-$r/predictions.parquet" \
        || { echo "round $r: the merged predictions differ from the single process's" >&2; exit 1; }
    echo "round $r: single ${single[-1]} s, slurm array of $shards ${slurm[-1]} s (predictions identical)"
done
python3 - "$work" "$shards" "$rounds" "${single[@]}" "${slurm[@]}" <<'PY'
import json, statistics, sys, glob, os
work, shards, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = list(map(float, sys.argv[4:]))
single, slurm = t[:rounds], t[rounds:]
ms, ma = statistics.median(single), statistics.median(slurm)
print(f"single process: median {ms:.1f} s {single}")
print(f"slurm array:    median {ma:.1f} s {slurm}")
print(f"speedup {ms / ma:.2f}x")
r = rounds
for d in sorted(glob.glob(f"{work}/runs/slurm-{r}/shards/*/shard.json")):
    s = json.load(open(d))
    f, w = s["timings"].get("features", 0), s["timings"].get("walk_forward", 0)
    print(f"  shard {s['shard']['index']}: {len(s['tasks'])} tasks, features {f:.1f} s, walk-forward {w:.1f} s")
rep = json.load(open(f"{work}/runs/single-{r}/report.json"))
print("  single stages:", {k: round(v, 1) for k, v in rep["timings_seconds"].items()})
print("  single fit seconds per model:", {k: round(v["fit_seconds"], 1) for k, v in rep["models"].items()})
merged = json.load(open(f"{work}/runs/slurm-{r}/report.json"))
print("  merge stages:", {k: round(v, 1) for k, v in merged["timings_seconds"].items()})
PY
