# Shared by the benchmark scripts (source it): a throwaway PostgreSQL 15 cluster and the nightly config the
# serving benchmarks train with.

pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

# Runs a command as the postgres user when root (initdb refuses root), else as is.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_pg DIR: a cluster in DIR/pg on a free port (set as $pgport), trust auth on 127.0.0.1, no fsync.
start_pg() {
    pgport=$(free_port)
    mkdir -p "$1/pg"
    [ "$(id -u)" = 0 ] && chown postgres "$1/pg"
    as_pg "$pgbin/initdb" -D "$1/pg/data" -A trust -U postgres --no-sync -E UTF8 >/dev/null
    as_pg "$pgbin/pg_ctl" -D "$1/pg/data" -l "$1/pg/log" -w start \
        -o "-p $pgport -k $1/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" >/dev/null
}

# stop_pg DIR: stops the cluster at once (for the EXIT trap).
stop_pg() { as_pg "$pgbin/pg_ctl" -D "$1/pg/data" -m immediate stop >/dev/null 2>&1 || true; }

# nightly_config FILE PRICES: a linear model trained on PRICES and published whatever its metrics.
nightly_config() {
    cat >"$1" <<CFG
seed = 42
jobs = 2
[data]
prices = "$2"
horizon = 5
[split]
min_train_days = 400
test_days = 100
valid_days = 20
[[models]]
name = "bench"
config = "$PWD/configs/models/linear.toml"
[strategy]
kind = "top_k"
k = 20
rebalance_days = 5
[gate]
metric = "rank_ic"
min = -1.0
beat_champion = false
[final]
train_days = 300
valid_fraction = 0.1
CFG
}

# published BIN N LATEST: database runN (URL in $db) holding $work/synth.parquet, and a model trained on it as
# of LATEST published in $work/modelsN by BIN.
published() {
    db="postgres://postgres@127.0.0.1:$pgport/run$2"
    as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres "run$2"
    "$1" --quiet db migrate --database-url "$db"
    "$1" --quiet db import-prices --prices "$work/synth.parquet" --database-url "$db" >/dev/null
    "$1" --quiet train --config "$work/nightly.toml" --models-dir "$work/models$2" --as-of "$3" \
        --created-at 2026-01-01T00:00:00Z >/dev/null
}
