#!/usr/bin/env bash
# The serving fault run of docs/serving.md ("Fault run: a cache thrash and a Redis stall"), against
# one or more `stockcast` binaries on the same data, e.g. the build before the hardening and the current one:
#
#   bash bench/fault_run.sh /tmp/stockcast-before target/release/stockcast
#
# Not a test (it takes ~2 minutes a binary and needs wrk, redis-server and PostgreSQL 15; run as root or as a user
# that may run initdb). For each binary: a throwaway PostgreSQL cluster holding a seeded synthetic panel of
# SYMBOLS (1,000) × DAYS (600), a linear model trained and promoted by `stockcast train`, then `stockcast serve`
# with the binary's own defaults and:
#   1. thrash: wrk with 8 connections cycling `POST /v1/predict` through 70 earlier trading dates (every request a
#      day to compute), while a normal client (wrk, 2 connections) asks for the latest day, warmed before the run;
#   2. Redis stall: rate limits on, buckets in a real redis-server; wrk (2 threads, 80 connections) on
#      `GET /v1/models` with Redis answering, then with Redis frozen by SIGSTOP.
# Each pass prints wrk's statuses, requests/s, p50/p99/max (µs).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/fault_run.sh STOCKCAST_BINARY..." >&2; exit 2; }
for tool in wrk redis-server; do
    command -v "$tool" >/dev/null || { echo "fault_run: $tool is required (Debian: apt-get install $tool)" >&2; exit 2; }
done
source bench/lib.sh
symbols=${SYMBOLS:-1000}
days=${DAYS:-600}
seconds=${SECONDS_PER_PASS:-20}

work=$(mktemp -d /tmp/stockcast-fault.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
    stop_pg "$work"
    rm -rf "$work"
}
trap cleanup EXIT
start_pg "$work"

first=$1
"$first" --quiet datasets synth --symbols "$symbols" --days "$days" --seed 7 --out "$work/synth.parquet"
# The 70 dates before the latest, the latest, and 5 symbols to ask for.
read -r latest thrash_dates ask < <(python3 - "$work/synth.parquet" <<'EOF'
import sys, polars as pl
f = pl.read_parquet(sys.argv[1])
d = [str(x) for x in f["date"].unique().sort().to_list()]
s = f["symbol"].unique().sort().to_list()[:5]
print(d[-1], ",".join(d[-71:-1]), ",".join(f'"{x}"' for x in s))
EOF
)
nightly_config "$work/nightly.toml" "$work/synth.parquet"

wrk_line() { # label, wrk output file
    printf '  %-34s %s | %s\n' "$1" "$(grep '^wrk-statuses' "$2" | cut -d' ' -f2-)" \
        "$(grep '^wrk-totals' "$2" | cut -d' ' -f2-) req/s=$(awk '/^Requests\/sec/ {print $2}' "$2")"
}
serve_up() { # binary, config: starts the server, waits for /readyz
    "$1" --quiet serve --config "$2" --database-url "$db" >"$work/serve.log" 2>&1 &
    server=$!
    pids+=("$server")
    for _ in $(seq 1 600); do
        curl -sf "http://$addr/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
        sleep 0.2
    done
    echo "fault_run: the server did not get ready" >&2; exit 1
}
serve_down() { kill "$server"; wait "$server" 2>/dev/null || true; }

n=0
for bin in "$@"; do
    n=$((n + 1))
    published "$bin" "$n" "$latest"
    addr=127.0.0.1:$(free_port)
    printf 'addr = "%s"\nmodels_dir = "%s"\npoll_s = 0\n' "$addr" "$work/models$n" >"$work/serve$n.toml"
    echo "== $bin ($("$bin" --version)), $symbols symbols x $days days, ${seconds} s a pass"

    serve_up "$bin" "$work/serve$n.toml"
    body="{\"symbols\": [$ask], \"date\": \"$latest\"}"
    t0=$(date +%s.%N)
    curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "$body" "http://$addr/v1/predict" \
        >"$work/warm.status"
    printf '  latest day warmed: %s in %.2f s\n' "$(cat "$work/warm.status")" "$(echo "$(date +%s.%N) - $t0" | bc)"
    wrk -t1 -c8 -d"${seconds}s" --timeout 60s -s bench/wrk_fixed_rate.lua "http://$addr" \
        -- 0 8 "$ask" ${thrash_dates//,/ } >"$work/thrash.out" 2>&1 &
    thrasher=$!
    sleep 1
    wrk -t1 -c2 -d"$((seconds - 2))s" --timeout 60s -s bench/wrk_fixed_rate.lua "http://$addr" \
        -- 0 2 "$ask" "$latest" >"$work/normal.out" 2>&1
    wait "$thrasher"
    wrk_line "thrash: 70 old days, 8 conns" "$work/thrash.out"
    wrk_line "thrash: normal client, latest day" "$work/normal.out"
    serve_down

    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
    redis=$!
    pids+=("$redis")
    sleep 0.5
    printf 'rate_limit_per_s = 1000000.0\nrate_limit_burst = 1000000.0\nrate_limit_redis_url = "redis://127.0.0.1:%s/0"\n' \
        "$rport" >>"$work/serve$n.toml"
    serve_up "$bin" "$work/serve$n.toml"
    wrk -t2 -c80 -d"${seconds}s" --timeout 60s -s bench/wrk_fixed_rate.lua "http://$addr/v1/models" -- 0 80 \
        >"$work/redis-up.out" 2>&1
    wrk_line "Redis answering, 80 conns" "$work/redis-up.out"
    kill -STOP "$redis"
    wrk -t2 -c80 -d"${seconds}s" --timeout 60s -s bench/wrk_fixed_rate.lua "http://$addr/v1/models" -- 0 80 \
        >"$work/redis-stopped.out" 2>&1
    kill -CONT "$redis"
    wrk_line "Redis frozen (SIGSTOP), 80 conns" "$work/redis-stopped.out"
    printf '  server log lines during the run: %s (warnings: %s)\n' "$(wc -l <"$work/serve.log")" \
        "$(grep -c -i warn "$work/serve.log" || true)"
    serve_down
    kill "$redis"; wait "$redis" 2>/dev/null || true
done
