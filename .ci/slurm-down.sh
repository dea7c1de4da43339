#!/usr/bin/env bash
# Stop the one-node Slurm cluster that .ci/slurm-up.sh started: only the daemons whose pids it
# recorded under $FILMORPH_SLURM_DIR (default /var/lib/filmorph-slurm), never by name. Daemons
# that were already running before slurm-up.sh (no pid file of ours) are left alone.
# Idempotent: missing or stale pid files are skipped. Jobs still queued are lost.
set -euo pipefail

STATE_DIR=${FILMORPH_SLURM_DIR:-/var/lib/filmorph-slurm}

log() { printf '[slurm-down] %s\n' "$*"; }

# stop NAME: TERM the pid in STATE_DIR/NAME.pid if it still runs NAME, wait up to 15 s, then KILL.
stop() {
    local name=$1 pidfile=$STATE_DIR/$1.pid pid
    if [[ ! -s $pidfile ]]; then log "$name: no pid file, skipped"; return 0; fi
    pid=$(<"$pidfile")
    if [[ ! $pid =~ ^[0-9]+$ ]] || [[ ! -r /proc/$pid/comm ]] || [[ $(</proc/"$pid"/comm) != "$name" ]]; then
        log "$name: pid ${pid:-?} not running $name, skipped"
        rm -f "$pidfile"
        return 0
    fi
    log "$name: stopping pid $pid"
    kill -TERM "$pid"
    for _ in $(seq 30); do [[ -d /proc/$pid ]] || break; sleep 0.5; done
    if [[ -d /proc/$pid ]]; then log "$name: still alive, KILL"; kill -KILL "$pid" || true; fi
    rm -f "$pidfile"
}

# Node daemon first, then the controller, then munge.
stop slurmd
stop slurmctld
stop munged
