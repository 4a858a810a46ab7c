#!/usr/bin/env bash
# Submits a sharded backtest (or, with --train, a sharded nightly run) to Slurm: writes the plan, then an array of
# SHARDS shard tasks (default: one per task of the plan, at most 64) and a merge job that runs after all of them
# succeeded.
#
#   deploy/slurm/submit.sh [--train] CONFIG OUT [SHARDS] [-- extra sbatch options, e.g. --partition=cpu]
#
# Prints the array and merge job ids (`ARRAY_ID MERGE_ID`); logs go to OUT/logs/. OUT must be on a filesystem
# every node sees. STOCKCAST_BIN names the binary (default: stockcast on PATH); a nightly run's registry is
# STOCKCAST_MODELS_DIR (default: models).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
job=backtest
if [[ "${1:-}" == "--train" ]]; then
    job=train
    shift
fi
config="${1:?usage: submit.sh [--train] CONFIG OUT [SHARDS] [-- sbatch options]}"
out="${2:?usage: submit.sh CONFIG OUT [SHARDS] [-- sbatch options]}"
shift 2
shards=""
if [[ $# -gt 0 && "$1" != "--" ]]; then
    shards="$1"
    shift
fi
[[ "${1:-}" == "--" ]] && shift
bin="${STOCKCAST_BIN:-stockcast}"
config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"
# An empty directory until the plan is in it: a run directory holds only what stockcast wrote (README: what an
# output replaces).
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# The plan: what every shard checks it agrees with (data, spec and config hashes) and the task count.
if [[ "$job" == train ]]; then
    export STOCKCAST_MODELS_DIR="${STOCKCAST_MODELS_DIR:-models}"
    planned="$("$bin" train --config "$config" --run-dir "$out" --plan)"
    shard_script="$here/train.sbatch" merge_script="$here/train-merge.sbatch"
else
    planned="$("$bin" backtest --config "$config" --out "$out" --plan)"
    shard_script="$here/backtest.sbatch" merge_script="$here/merge.sbatch"
fi
mkdir -p "$out/logs"
tasks="$(sed -n 's/^\([0-9][0-9]*\) tasks.*/\1/p' <<<"$planned")"
[[ -n "$tasks" ]] || { echo "submit.sh: no task count from --plan" >&2; exit 1; }
if [[ -z "$shards" ]]; then
    shards=$(( tasks < 64 ? tasks : 64 ))
fi
export STOCKCAST_CONFIG="$config" STOCKCAST_OUT="$out" STOCKCAST_BIN="$bin"
array="$(sbatch --parsable --array=0-$((shards - 1)) --output="$out/logs/shard-%a.out" "$@" "$shard_script")"
array="${array%%;*}"
merge="$(sbatch --parsable --dependency=afterok:"$array" --kill-on-invalid-dep=yes --output="$out/logs/merge.out" "$@" \
    "$merge_script")"
echo "${array} ${merge%%;*}"
