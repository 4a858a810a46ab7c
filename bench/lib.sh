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
