#!/usr/bin/env bash
# `stockcast db import-prices` against `psql \copy` of the same rows into the same schema: a throwaway
# PostgreSQL 15 cluster, SYMBOLS (5,000) x DAYS (300) synthetic prices as Parquet (ours) and CSV (psql), each
# import into a fresh database (migrated; psql's gets the securities rows the foreign key needs first, untimed),
# alternating ROUNDS (3) times; prints each time and the medians and their ratio. Extra binaries given as
# arguments are timed the same way (e.g. the build before a change).
#
#   bash bench/import_copy.sh [OTHER_STOCKCAST_BINARY...]     (needs PostgreSQL 15 and python3 with polars)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${STOCKCAST:-${CARGO_TARGET_DIR:-$HOME/.cache/stockcast-target}/release/stockcast}"
source bench/lib.sh
symbols=${SYMBOLS:-5000}
days=${DAYS:-300}
rounds=${ROUNDS:-3}
work=$(mktemp -d /tmp/stockcast-import.XXXXXX)
chmod 755 "$work"
cleanup() { stop_pg "$work"; rm -rf "$work"; }
trap cleanup EXIT
start_pg "$work"
port=$pgport
"$bin" --quiet datasets synth --symbols "$symbols" --days "$days" --seed 7 --out "$work/prices.parquet"
python3 - "$work" <<'PY'
import sys, polars as pl
w = sys.argv[1]
f = pl.read_parquet(f"{w}/prices.parquet").with_columns(pl.lit(None, dtype=pl.Float64).alias("raw_close"))
f.select(["symbol", "date", "open", "high", "low", "close", "volume", "raw_close"]).write_csv(f"{w}/prices.csv")
f.select("symbol").unique().sort("symbol").write_csv(f"{w}/securities.csv")
PY
psql() { command psql -q -h 127.0.0.1 -p "$port" -U postgres "$@"; }
fresh() { # database name: created and migrated
    psql -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
    "$bin" --quiet db migrate --database-url "postgres://postgres@127.0.0.1:$port/$1" >/dev/null
}
seconds() { local t0; t0=$(date +%s.%N); "$@" >/dev/null; echo "$(date +%s.%N) - $t0" | bc; }
declare -A times
for r in $(seq "$rounds"); do
    n=0
    for b in "$bin" "$@"; do
        n=$((n + 1))
        fresh "imp$n"
        t=$(seconds "$b" --quiet db import-prices --prices "$work/prices.parquet" \
            --database-url "postgres://postgres@127.0.0.1:$port/imp$n")
        echo "round $r  import-prices ($b): $t s"
        times[$n]="${times[$n]:-} $t"
    done
    fresh copy
    psql -d copy -c "\\copy securities (symbol) FROM '$work/securities.csv' WITH (FORMAT csv, HEADER true)"
    t=$(seconds psql -d copy -c "\\copy prices (symbol, date, open, high, low, close, volume, raw_close) FROM '$work/prices.csv' WITH (FORMAT csv, HEADER true)")
    echo "round $r  psql \\copy: $t s"
    times[copy]="${times[copy]:-} $t"
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
c=$(echo "${times[copy]}" | median)
echo "median psql \\copy: $c s"
n=0
for b in "$bin" "$@"; do
    n=$((n + 1))
    m=$(echo "${times[$n]}" | median)
    echo "median import-prices ($b): $m s, ratio to \\copy $(echo "scale=2; $m / $c" | bc)"
done
