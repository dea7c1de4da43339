#!/usr/bin/env bash
# Bring up a one-node Slurm cluster on this machine (Debian 12, run as root), for CI runs of
# `snakemake --profile profiles/ci-slurm`. Idempotent: a second run reuses what is installed
# and running, and only starts what is missing.
#
#   bash .ci/slurm-up.sh      # then: sinfo; squeue
#   bash .ci/slurm-down.sh    # stops only the daemons this script started (pid files)
#
# State, spool, logs and pid files live under $FILMORPH_SLURM_DIR (default
# /var/lib/filmorph-slurm). The config goes to /etc/slurm/slurm.conf, the default path, because
# the `srun` that Snakemake's jobstep runs inside each job does not see a SLURM_CONF pointing
# elsewhere (shared/notes/local-slurm.md).
set -euo pipefail

STATE_DIR=${FILMORPH_SLURM_DIR:-/var/lib/filmorph-slurm}
CONF=/etc/slurm/slurm.conf
WAIT_S=${FILMORPH_SLURM_WAIT_S:-60}
NODE=$(hostname -s)

log() { printf '[slurm-up] %s\n' "$*"; }
die() { printf '[slurm-up] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root"

# True if the pid in file $1 is alive and runs command $2.
alive() {
    local pidfile=$1 comm=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/comm ]] && [[ $(</proc/"$pid"/comm) == "$comm" ]]
}

# 1. Packages (about a minute on a fresh machine). policy-rc.d keeps apt from starting daemons.
if ! command -v slurmctld >/dev/null 2>&1; then
    log "installing slurm-wlm munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    || die "slurmctld/slurmd/munged still missing after install"

install -d -m 755 "$STATE_DIR" "$STATE_DIR/state" "$STATE_DIR/spool" "$STATE_DIR/log"

# 2. Munge: a key, then the daemon (unless a working munged already answers).
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    install -d -m 700 -o munge -g munge /etc/munge
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already answering"
else
    log "starting munged"
    install -d -m 755 -o munge -g munge /run/munge /var/log/munge /var/lib/munge
    # munged forks and writes its own pid file; copy it into STATE_DIR for slurm-down.sh.
    munged --force --pid-file="$STATE_DIR/munged.pid" 2>/dev/null \
        || munged --force
    [[ -s $STATE_DIR/munged.pid ]] || cp /run/munge/munged.pid "$STATE_DIR/munged.pid"
    for _ in $(seq 20); do munge -n | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    munge -n | unmunge >/dev/null || die "munged does not answer"
fi

# 3. slurm.conf: written only while our controller is down, so that a second run does not
#    change the node definition (RealMemory) under a running cluster.
if alive "$STATE_DIR/slurmctld.pid" slurmctld && [[ -s $CONF ]]; then
    log "slurmctld already running (pid $(<"$STATE_DIR/slurmctld.pid")); keeping $CONF"
else
    cpus=$(nproc)
    avail_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
    # Leave 10 % (at least 1 GiB) for the OS and for Snakemake on the "login node".
    mem_mb=$((avail_kb / 1024))
    reserve=$((mem_mb / 10 > 1024 ? mem_mb / 10 : 1024))
    mem_mb=$(((mem_mb - reserve) / 1024 * 1024))   # round down to whole GiB: stable across runs
    ((mem_mb > 0)) || die "too little free memory ($((avail_kb / 1024)) MiB)"
    log "writing $CONF: node $NODE, CPUs=$cpus, RealMemory=$mem_mb"
    install -d -m 755 /etc/slurm
    cat >"$CONF" <<EOF
# Written by filmorph .ci/slurm-up.sh: a one-node CI cluster. Do not edit by hand.
ClusterName=filmorph-ci
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Keep finished jobs visible to squeue: there is no sacct here (no accounting database).
MinJobAge=600
ReturnToService=2
SchedulerType=sched/backfill
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$NODE CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
fi

# 4. Daemons: the controller first, then the node daemon. Both fork and write the pid files
#    named in slurm.conf (under STATE_DIR), which slurm-down.sh reads.
if ! alive "$STATE_DIR/slurmctld.pid" slurmctld; then
    log "starting slurmctld"
    slurmctld
    for _ in $(seq 20); do scontrol ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
scontrol ping | grep -q UP || die "slurmctld does not answer; see $STATE_DIR/log/slurmctld.log"
if ! alive "$STATE_DIR/slurmd.pid" slurmd; then
    log "starting slurmd"
    slurmd
fi

# 5. Wait (bounded) for the node to be idle (or busy: a rerun while CI jobs are running).
deadline=$((SECONDS + WAIT_S))
state=
while ((SECONDS < deadline)); do
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n1)
    case $state in idle | mixed | allocated | completing) break ;; esac
    # A node left DOWN/DRAIN by an earlier run comes back with RESUME.
    case $state in down* | drain* | fail*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;; esac
    sleep 1
done
case $state in
idle | mixed | allocated | completing) log "node $NODE is $state after $((SECONDS))s" ;;
*) die "node $NODE is '${state:-?}' after ${WAIT_S}s; see $STATE_DIR/log/slurmd.log" ;;
esac
sinfo
