#!/usr/bin/env bash
# Serving throughput with every protection on, as shipped (connection caps, body and query limits, metrics,
# request timeouts, the per-client compute bounds; rate limits off, as in the default config): one or more
# `stockcast` binaries on the same data, each behind real sockets, wrk as a separate process.
#
#   bash bench/serve_wrk.sh [STOCKCAST_BINARY...]     (default: the release build)
#
# For each binary: a throwaway PostgreSQL 15 cluster with SYMBOLS (1,000) x DAYS (600) synthetic prices, a linear
# model trained and promoted, the latest day's recommendations stored (`stockcast recommend`), then
# `stockcast serve` and `wrk -t2 -c32 -d${SECONDS_PER_PASS}s` (closed loop) on
#   1. GET /healthz
#   2. GET /v1/recommendations?limit=3 (cached after the first request), then ?limit=100 from a client that sends
#      `Accept-Encoding: gzip` (as most HTTP libraries do)
#   3. POST /v1/predict, two symbols, the latest date (scored once at start-up)
#   4. POST /v1/predict, 500 symbols, the latest date
#   5. that POST and the cached GET again at one fixed rate (RATE, 5,000 req/s; bench/wrk_fixed_rate.lua), for
#      their p99 side by side (wrk's connections stay closed loops: a stall delays its connection's next request)
# and, last in each round, `stockcast-bench http-floor` (a bare hyper server with the cached GET's body size and
# headers, no router or middleware: what no layer of ours can remove on this machine) under the same wrk.
# ROUNDS (3) rounds, binaries alternating within each; prints each pass's statuses, req/s and p50/p99 (µs), then
# the median req/s per binary and pass. Each pass also prints the server's CPU time per request (/proc/PID/stat).
# Not a test (needs wrk and PostgreSQL; ~1 minute a round and binary).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || set -- "${CARGO_TARGET_DIR:-$HOME/.cache/stockcast-target}/release/stockcast"
floor_bin=${FLOOR_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/stockcast-target}/release/stockcast-bench}
command -v wrk >/dev/null || { echo "serve_wrk: wrk is required (Debian: apt-get install wrk)" >&2; exit 2; }
source bench/lib.sh
symbols=${SYMBOLS:-1000}
days=${DAYS:-600}
seconds=${SECONDS_PER_PASS:-10}
rounds=${ROUNDS:-3}
rate=${RATE:-5000}

work=$(mktemp -d /tmp/stockcast-serve-wrk.XXXXXX)
chmod 755 "$work"
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    stop_pg "$work"
    rm -rf "$work"
}
trap cleanup EXIT
start_pg "$work"

"$1" --quiet datasets synth --symbols "$symbols" --days "$days" --seed 7 --out "$work/synth.parquet"
read -r latest two many < <(python3 - "$work/synth.parquet" <<'PY'
import sys, polars as pl
f = pl.read_parquet(sys.argv[1])
s = f["symbol"].unique().sort().to_list()
print(str(f["date"].max()), ",".join(f'"{x}"' for x in s[:2]), ",".join(f'"{x}"' for x in s[:500]))
PY
)
nightly_config "$work/nightly.toml" "$work/synth.parquet"
cat >"$work/predict.lua" <<'LUA'
-- POST /v1/predict with the body given after `--`.
function init(args) body = args[1] end
function request() return wrk.format("POST", "/v1/predict", { ["Content-Type"] = "application/json" }, body) end
LUA

n=0
for bin in "$@"; do
    n=$((n + 1))
    published "$bin" "$n" "$latest"
    "$bin" --quiet recommend --date "$latest" --models-dir "$work/models$n" --database-url "$db" >/dev/null
done

declare -A rates
pass() { # key, wrk arguments...
    local key=$1; shift
    local cpu0 cpu1 rps p50 p99 non2xx total
    cpu0=$(awk '{print $14 + $15}' "/proc/$server/stat")
    wrk -t2 -c32 -d"${seconds}s" --latency "$@" >"$work/wrk.out" 2>&1
    cpu1=$(awk '{print $14 + $15}' "/proc/$server/stat")
    rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.out")
    total=$(awk '/requests in/ {print $1}' "$work/wrk.out")
    p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out")
    p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.out")
    # The server's CPU (user + system, clock ticks of 1/100 s) per request.
    printf '  %-44s %10s req/s  p50 %8s  p99 %8s  non-2xx %s  server CPU %s us/request\n' "$key" "$rps" "$p50" \
        "$p99" "${non2xx:-0}" "$(echo "scale=1; ($cpu1 - $cpu0) * 10000 / $total" | bc)"
    rates[$key]="${rates[$key]:-} $rps"
}
for r in $(seq "$rounds"); do
    n=0
    for bin in "$@"; do
        n=$((n + 1))
        addr=127.0.0.1:$(free_port)
        printf 'addr = "%s"\nmodels_dir = "%s"\npoll_s = 0\n' "$addr" "$work/models$n" >"$work/serve$n.toml"
        "$bin" --quiet serve --config "$work/serve$n.toml" --database-url "postgres://postgres@127.0.0.1:$pgport/run$n" \
            >"$work/serve.log" 2>&1 &
        server=$!
        for _ in $(seq 1 600); do
            curl -sf "http://$addr/readyz" >/dev/null 2>&1 && break
            kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
            sleep 0.2
        done
        # The latest day scored (start-up warms it; this waits for it) and the recommendations page cached.
        curl -sf -o /dev/null -H 'Content-Type: application/json' -d "{\"symbols\": [$two], \"date\": \"$latest\"}" \
            "http://$addr/v1/predict"
        curl -sf -o /dev/null "http://$addr/v1/recommendations?limit=3"
        body_bytes=$(curl -sf "http://$addr/v1/recommendations?limit=3" | wc -c)
        echo "== round $r: $bin"
        pass "$n healthz" "http://$addr/healthz"
        pass "$n GET recommendations?limit=3 (cached)" "http://$addr/v1/recommendations?limit=3"
        curl -sf -o /dev/null "http://$addr/v1/recommendations?limit=100"
        pass "$n GET ?limit=100 (cached), gzip client" -H 'Accept-Encoding: gzip' \
            "http://$addr/v1/recommendations?limit=100"
        pass "$n POST predict, 2 symbols" -s "$work/predict.lua" "http://$addr" -- "{\"symbols\": [$two], \"date\": \"$latest\"}"
        pass "$n POST predict, 500 symbols" -s "$work/predict.lua" "http://$addr" -- "{\"symbols\": [$many], \"date\": \"$latest\"}"
        # The same two reads at one fixed rate (RATE, 5,000/s: each of the 32 connections paced), for the 500-symbol
        # POST's p99 beside the cached GET's at the same load.
        pass "$n at ${rate}/s: POST predict, 500 symbols" -s bench/wrk_fixed_rate.lua "http://$addr" -- "$rate" 32 \
            "$many" "$latest"
        pass "$n at ${rate}/s: GET recommendations?limit=3" -s bench/wrk_fixed_rate.lua \
            "http://$addr/v1/recommendations?limit=3" -- "$rate" 32
        kill "$server"; wait "$server" 2>/dev/null || true
        server=
    done
    addr=127.0.0.1:$(free_port)
    "$floor_bin" --quiet http-floor --addr "$addr" --body-bytes "$body_bytes" >"$work/floor.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do curl -sf -o /dev/null "http://$addr/" && break; sleep 0.1; done
    echo "== round $r: floor ($floor_bin http-floor)"
    pass "0 floor: bare hyper, the cached GET's body" "http://$addr/"
    kill "$server"; wait "$server" 2>/dev/null || true
    server=
done
echo "== medians over $rounds rounds (req/s)"
for key in "${!rates[@]}"; do
    printf '  %-44s %s\n' "$key" "$(echo "${rates[$key]}" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
done | sort
