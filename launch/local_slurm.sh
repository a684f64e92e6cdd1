#!/usr/bin/env bash
# A real single-node Slurm cluster on loopback, for development and CI.
#
#   launch/local_slurm.sh up       install (if missing) and start munged, slurmctld, slurmd;
#                                  wait until the node is idle
#   launch/local_slurm.sh down     cancel all jobs, stop the daemons this script started
#   launch/local_slurm.sh status   show the daemons and `sinfo`; exit 0 only when usable
#   launch/local_slurm.sh env      print `export SLURM_CONF=...` (use: eval "$(... env)")
#
# One node named `localhost` (CPUs = nproc, RealMemory from /proc/meminfo, one stand-in GPU
# so that `--gpus-per-node=1` is accepted) in one partition `debug` (the default). Everything
# lives in a private state dir, including a private munged with its own key and socket, so
# several clusters (different dirs and ports) can run side by side and a system-wide Slurm
# or munge is never touched. Needs root (apt-get, munged as user munge, slurmd).
#
# Environment:
#   DCVQ_SLURM_DIR          state dir (default /tmp/dcvq-slurm); must be traversable by
#                           user munge, so not below a 0700 directory
#   DCVQ_SLURM_CTLD_PORT    slurmctld port (default 6817)
#   DCVQ_SLURM_SLURMD_PORT  slurmd port (default 6818)
#   DCVQ_SLURM_TIMEOUT      seconds to wait for the node to become idle (default 60)
#   DCVQ_SLURM_CRED_EXPIRE  job credential lifetime in s; also how long Slurm holds a requeued
#                           job before it may start again (Slurm's default: 120; here 10)
#
# Clients (sbatch, squeue, submitit, the Hydra submitit launcher) find the cluster through
# SLURM_CONF=<dir>/slurm.conf: run `eval "$(launch/local_slurm.sh env)"` in your shell.
set -euo pipefail

DIR=${DCVQ_SLURM_DIR:-/tmp/dcvq-slurm}
CTLD_PORT=${DCVQ_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${DCVQ_SLURM_SLURMD_PORT:-6818}
TIMEOUT=${DCVQ_SLURM_TIMEOUT:-60}
CRED_EXPIRE=${DCVQ_SLURM_CRED_EXPIRE:-10}
PACKAGES=(slurmctld slurmd slurm-client munge)
NODE=localhost
PARTITION=debug

CONF=$DIR/slurm.conf
MUNGE_DIR=$DIR/munge
MUNGE_SOCKET=$MUNGE_DIR/munge.socket.2
LOG_DIR=$DIR/log
export SLURM_CONF=$CONF
export PATH=$PATH:/usr/sbin:/sbin

log() { printf 'local_slurm: %s\n' "$*" >&2; }

tail_logs() {
    local f
    for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" "$MUNGE_DIR/munged.log"; do
        if [[ -s $f ]]; then
            printf '\n----- last lines of %s -----\n' "$f" >&2
            tail -n 25 "$f" >&2
        fi
    done
}

die() {
    log "ERROR: $*"
    [[ ${SHOW_LOGS:-0} == 1 ]] && tail_logs
    exit 1
}

# running PID: the process exists and is not a zombie.
running() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# pid_of PIDFILE COMM: print the pid if that process is alive and is COMM.
pid_of() {
    local pidfile=$1 comm=$2 pid
    [[ -r $pidfile ]] || return 1
    pid=$(tr -dc '0-9' <"$pidfile")
    [[ -n $pid ]] || return 1
    running "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
    echo "$pid"
}

munged_pid() { pid_of "$MUNGE_DIR/munged.pid" munged; }
slurmctld_pid() { pid_of "$DIR/run/slurmctld.pid" slurmctld; }
slurmd_pid() { pid_of "$DIR/run/slurmd.pid" slurmd; }

# await_pid NAME: wait up to 10 s for a freshly started daemon to write its pid file.
await_pid() {
    local i
    for ((i = 0; i < 100; i++)); do
        "${1}_pid" >/dev/null && return 0
        sleep 0.1
    done
    SHOW_LOGS=1 die "$1 did not start (no live pid in its pid file)"
}

have_binaries() {
    local b
    for b in munged slurmctld slurmd sbatch sinfo squeue scancel scontrol; do
        command -v "$b" >/dev/null 2>&1 || return 1
    done
}

install_packages() {
    have_binaries && return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "Slurm/munge are not installed and there is no apt-get to install them" \
            "(needed: ${PACKAGES[*]})"
    log "installing ${PACKAGES[*]} (apt-get)"
    # Debian's maintainer scripts would start the services on install; without systemd
    # that fails or starts daemons we do not want. A policy-rc.d that answers 101 stops
    # invoke-rc.d and deb-systemd-invoke from starting anything.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        own_policy=1
    fi
    local apt_log=$DIR/apt.log rc=0
    local -a apt=(apt-get -y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300)
    export DEBIAN_FRONTEND=noninteractive
    "${apt[@]}" install --no-install-recommends "${PACKAGES[@]}" >"$apt_log" 2>&1 || rc=$?
    if ((rc != 0)); then
        log "install failed; running apt-get update and retrying"
        rc=0
        { "${apt[@]}" update && "${apt[@]}" install --no-install-recommends "${PACKAGES[@]}"; } \
            >>"$apt_log" 2>&1 || rc=$?
    fi
    if ((own_policy)); then
        rm -f "$policy"
        trap - EXIT
    fi
    if ((rc != 0)); then
        tail -n 20 "$apt_log" >&2
        die "apt-get could not install ${PACKAGES[*]} (no package registry?); log: $apt_log"
    fi
    have_binaries || die "installed ${PACKAGES[*]} but the daemons are still not on PATH"
}

write_config() {
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    cat >"$CONF" <<EOF
# Written by launch/local_slurm.sh: a single-node Slurm on loopback for development and CI.
ClusterName=dcvq-local
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=$CRED_EXPIRE
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Trust the node line below instead of draining the node when the hardware looks different.
SlurmdParameters=config_overrides
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    # The GPU is a stand-in (/dev/null): it lets `--gpus-per-node=1` be scheduled and tested.
    cat >"$DIR/gres.conf" <<EOF
AutoDetect=off
Name=gpu File=/dev/null Count=1
EOF
}

start_munged() {
    munged_pid >/dev/null && return 0
    id munge >/dev/null 2>&1 || die "there is no user 'munge' (is the munge package installed?)"
    install -d -m 0755 -o munge -g munge "$MUNGE_DIR"
    if [[ ! -s $MUNGE_DIR/munge.key ]]; then
        head -c 1024 /dev/urandom >"$MUNGE_DIR/munge.key"
        chown munge:munge "$MUNGE_DIR/munge.key"
        chmod 0400 "$MUNGE_DIR/munge.key"
    fi
    runuser -u munge -- test -x "$MUNGE_DIR" ||
        die "user munge cannot reach $MUNGE_DIR: make every directory above it world-executable"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    runuser -u munge -- munged --socket="$MUNGE_SOCKET" --key-file="$MUNGE_DIR/munge.key" \
        --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" 9>&- ||
        SHOW_LOGS=1 die "munged failed to start"
    await_pid munged
}

start_slurmctld() {
    slurmctld_pid >/dev/null && return 0
    # A fresh controller state every time: no stale jobs or node states from an old run.
    rm -rf "$DIR/state"
    install -d -m 0755 "$DIR/state"
    slurmctld -f "$CONF" 9>&- || SHOW_LOGS=1 die "slurmctld failed to start"
    await_pid slurmctld
}

start_slurmd() {
    slurmd_pid >/dev/null && return 0
    slurmd -f "$CONF" -N "$NODE" 9>&- || SHOW_LOGS=1 die "slurmd failed to start"
    await_pid slurmd
}

node_state() { sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -n 1; }

wait_idle() {
    local deadline=$((SECONDS + TIMEOUT)) state=""
    while ((SECONDS < deadline)); do
        state=$(node_state || true)
        case $state in
        idle | mix | alloc | comp) return 0 ;;
        drain* | drng* | fail*)
            SHOW_LOGS=1 die "node $NODE is $state: $(sinfo -h -R -o '%E' 2>/dev/null || true)"
            ;;
        esac
        for d in munged slurmctld slurmd; do
            "${d}_pid" >/dev/null || SHOW_LOGS=1 die "$d died while starting"
        done
        sleep 0.2
    done
    SHOW_LOGS=1 die "node $NODE not idle after ${TIMEOUT}s (state: '${state:-no answer}')"
}

up() {
    ((EUID == 0)) || die "must run as root (installs packages, runs munged as user munge)"
    install -d -m 0755 "$DIR"
    # Serialise concurrent up/down on one dir. Daemons get `9>&-` so they never hold the lock.
    exec 9>"$DIR/.lock"
    flock -w 120 9 || die "another local_slurm.sh holds $DIR/.lock"
    install_packages
    install -d -m 0755 "$DIR/run" "$DIR/spool" "$LOG_DIR"
    # Rewrite the config only when no daemon of this cluster is running.
    if ! slurmctld_pid >/dev/null && ! slurmd_pid >/dev/null; then
        write_config
    fi
    start_munged
    start_slurmctld
    start_slurmd
    wait_idle
    log "up: node $NODE $(node_state) in partition $PARTITION (SLURM_CONF=$CONF)"
    echo "export SLURM_CONF=$CONF"
}

# children_of PID: the pids of its live child processes.
children_of() {
    local f stat ppid
    for f in /proc/[0-9]*/stat; do
        stat=$(cat "$f" 2>/dev/null) || continue
        stat=${stat##*) }
        read -r _ ppid _ <<<"$stat"
        [[ $ppid == "$1" ]] && basename "$(dirname "$f")"
    done
    return 0
}

# stop NAME...: SIGTERM to all (each takes ~2 s to exit), wait up to 15 s, then SIGKILL.
stop() {
    local name pid i
    local -a pids=() kids=()
    for name in "$@"; do
        pid=$("${name}_pid") || continue
        # slurmctld's helper slurmscriptd exits with it: wait for it as well.
        mapfile -t kids < <(children_of "$pid")
        pids+=("$pid" "${kids[@]}")
        kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = 0; i < 150; i++)); do
        local alive=0
        for pid in "${pids[@]}"; do
            running "$pid" && alive=1
        done
        ((alive)) || return 0
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        if running "$pid"; then
            log "$(cat "/proc/$pid/comm" 2>/dev/null) ($pid) ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

down() {
    [[ -d $DIR ]] || return 0
    exec 9>"$DIR/.lock"
    flock -w 120 9 || die "another local_slurm.sh holds $DIR/.lock"
    if slurmctld_pid >/dev/null && munged_pid >/dev/null; then
        local jobs i
        jobs=$(squeue -h -o %A 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            # shellcheck disable=SC2086  # one job id per word
            scancel $jobs 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do
                [[ -z $(squeue -h -o %A 2>/dev/null || true) ]] && break
                sleep 0.2
            done
        fi
    fi
    stop slurmd slurmctld munged
    log "down"
}

status() {
    local d pid ok=0
    for d in munged slurmctld slurmd; do
        if pid=$("${d}_pid"); then
            echo "$d: running (pid $pid)"
        else
            echo "$d: not running"
            ok=1
        fi
    done
    if ((ok == 0)); then
        sinfo || ok=1
    fi
    return $ok
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
env) echo "export SLURM_CONF=$CONF" ;;
*)
    echo "usage: $0 up|down|status|env" >&2
    exit 2
    ;;
esac
