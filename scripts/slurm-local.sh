#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the sharded-run tests and benchmarks (Debian's slurm-wlm and
# munge; run as root, as in CI and these sandboxes).
#
#   scripts/slurm-local.sh start DIR   start munged (if not running), slurmctld and slurmd with their config,
#                                      state, spool, logs and pid files under DIR; prints `export SLURM_CONF=...`
#   scripts/slurm-local.sh stop DIR    stop the daemons started for DIR (munged, shared, keeps running)
#
# Clients (sbatch, squeue, sacct-less `scontrol show job`) find the cluster through SLURM_CONF=DIR/slurm.conf.
# The node is this machine with its real CPU count and memory; tasks are scheduled per CPU (cons_tres, CR_CPU), so
# `--cpus-per-task=1` runs as many tasks at once as there are CPUs, each bound to its CPUs (task/affinity: a task
# cannot use more cores than it was given). ProctrackType=proctrack/linuxproc because cgroups are not available in
# these sandboxes (so memory is a scheduling limit, not enforced).
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
if [[ -z "$cmd" || -z "$dir" ]]; then
    echo "usage: $0 start|stop DIR" >&2
    exit 2
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_munge() {
    if pgrep -x munged >/dev/null; then
        return
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        install -d -o munge -g munge -m 700 /etc/munge
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do
        [[ -S /run/munge/munge.socket.2 ]] && return
        sleep 0.1
    done
    echo "slurm-local: munged did not start" >&2
    exit 1
}

case "$cmd" in
start)
    command -v slurmctld >/dev/null || { echo "slurm-local: slurmctld not found (scripts/setup.sh installs slurm-wlm)" >&2; exit 1; }
    dir="$(mkdir -p "$dir" && cd "$dir" && pwd)"
    mkdir -p "$dir/state" "$dir/spool" "$dir/log"
    start_munge
    node="$(hostname -s)"
    cpus="$(nproc)"
    # What slurmd sees, less a margin (a node configured with more memory than it has is drained).
    mem="$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
    mem=$(( ${mem:-4096} * 9 / 10 ))
    cat >"$dir/slurm.conf" <<EOF
ClusterName=stockcast-local
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=2048
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    # -i: ignore state from an earlier cluster in the same directory.
    slurmctld -i -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 100); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "export SLURM_CONF=$SLURM_CONF"
            exit 0
        fi
        sleep 0.2
    done
    echo "slurm-local: the node did not come up; see $dir/log" >&2
    sinfo -N -l >&2 || true
    tail -n 20 "$dir/log/"*.log >&2 || true
    exit 1
    ;;
stop)
    for d in slurmd slurmctld; do
        pidfile="$dir/$d.pid"
        if [[ -s "$pidfile" ]]; then
            pid="$(cat "$pidfile")"
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
