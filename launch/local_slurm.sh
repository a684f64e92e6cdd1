#!/usr/bin/env bash
# A real Slurm cluster on this machine, for development and CI: one node on loopback, or
# several nodes, each in its own network namespace.
#
#   launch/local_slurm.sh up [--nodes N]
#                                  install (if missing) and start munged, slurmctld and one
#                                  slurmd per node (N, default 1; a running cluster keeps
#                                  its count); wait until every node is idle
#   launch/local_slurm.sh down     cancel all jobs, stop the daemons this script started,
#                                  remove the nodes' network namespaces
#   launch/local_slurm.sh status   show the daemons and `sinfo`; exit 0 only when usable
#   launch/local_slurm.sh env      print `export SLURM_CONF=...` (use: eval "$(... env)")
#   launch/local_slurm.sh exec NODE CMD...
#                                  run CMD as on node NODE (its network, hostname and
#                                  /etc/hosts), as after `ssh NODE`: interactive `srun` and
#                                  `salloc` must run there with several nodes
#
# --nodes 1 (the default): one node named `localhost` on 127.0.0.1. --nodes N > 1: nodes
# n1..nN, each a slurmd in its own network namespace (veth on a private bridge, subnet
# a.b.c.0/24: controller a.b.c.1, node i a.b.c.(i+1)), UTS namespace (hostname n<i>) and
# mount namespace (a private /etc/hosts naming every node), so jobs see what a cluster
# node sees: their own hostname and address, the other nodes over a network. Every node
# declares the machine's CPUs (nproc) and memory (/proc/meminfo) and one stand-in GPU so
# that `--gpus-per-node=1` is accepted; the nodes share the real CPUs. One partition
# `debug` (the default) with all nodes. Everything lives in a private state dir, including
# a private munged with its own key and socket, so several clusters (different dirs and
# ports) can run side by side and a system-wide Slurm or munge is never touched. Needs
# root (apt-get, munged as user munge, slurmd, namespaces).
#
# Environment:
#   DCVQ_SLURM_DIR          state dir (default /tmp/dcvq-slurm); must be traversable by
#                           user munge, so not below a 0700 directory
#   DCVQ_SLURM_CTLD_PORT    slurmctld port (default 6817)
#   DCVQ_SLURM_SLURMD_PORT  slurmd port (default 6818; every node's, at its own address)
#   DCVQ_SLURM_SUBNET       --nodes N > 1: the nodes' /24 as a.b.c (default: the first
#                           10.218.c.0/24 no interface of this machine uses)
#   DCVQ_SLURM_TIMEOUT      seconds to wait for the nodes to become idle (default 60)
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
PACKAGES=(slurmctld slurmd slurm-client munge iproute2)
PARTITION=debug

CONF=$DIR/slurm.conf
# The layout `up` chose (NODES; for several nodes SUBNET and NET_ID), read by the later
# commands; `down` removes it.
LAYOUT=$DIR/layout.env
MUNGE_DIR=$DIR/munge
MUNGE_SOCKET=$MUNGE_DIR/munge.socket.2
LOG_DIR=$DIR/log
# Every `up` on this machine chooses its subnet and interface names under this lock.
NET_LOCK=/tmp/.dcvq-slurm-net.lock
export SLURM_CONF=$CONF
export PATH=$PATH:/usr/sbin:/sbin

NODES=1 SUBNET="" NET_ID=""
CTLD_HOST=dcvq-ctld

log() { printf 'local_slurm: %s\n' "$*" >&2; }

# node_names: the nodes of this cluster's layout, one per line.
node_names() {
    local i
    if ((NODES == 1)); then
        echo localhost
    else
        for ((i = 1; i <= NODES; i++)); do echo "n$i"; done
    fi
}

# Where a node's slurmd writes its pid and log (slurm.conf's %n: the node name).
slurmd_pidfile() {
    if ((NODES == 1)); then echo "$DIR/run/slurmd.pid"; else echo "$DIR/run/slurmd-$1.pid"; fi
}
slurmd_logfile() {
    if ((NODES == 1)); then echo "$LOG_DIR/slurmd.log"; else echo "$LOG_DIR/slurmd-$1.log"; fi
}

tail_logs() {
    local f node
    local -a files=("$LOG_DIR/slurmctld.log")
    while read -r node; do files+=("$(slurmd_logfile "$node")"); done < <(node_names)
    files+=("$MUNGE_DIR/munged.log")
    for f in "${files[@]}"; do
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
# slurmd_pid NODE
slurmd_pid() { pid_of "$(slurmd_pidfile "$1")" slurmd; }

# any_slurmd: whether a slurmd of this cluster runs.
any_slurmd() {
    local node
    while read -r node; do
        slurmd_pid "$node" >/dev/null && return 0
    done < <(node_names)
    return 1
}

# await_pid NAME [NODE]: wait up to 10 s for a freshly started daemon to write its pid file.
await_pid() {
    local i
    for ((i = 0; i < 100; i++)); do
        "${1}_pid" "${@:2}" >/dev/null && return 0
        sleep 0.1
    done
    SHOW_LOGS=1 die "$1${2:+ of node $2} did not start (no live pid in its pid file)"
}

# load_layout: NODES, SUBNET, NET_ID as `up` recorded them (one node if never recorded).
load_layout() {
    NODES=1 SUBNET="" NET_ID=""
    if [[ -r $LAYOUT ]]; then
        # shellcheck disable=SC1090  # written by save_layout
        source "$LAYOUT"
    fi
}

save_layout() {
    printf 'NODES=%s\nSUBNET=%s\nNET_ID=%s\n' "$NODES" "$SUBNET" "$NET_ID" >"$LAYOUT"
}

have_binaries() {
    local b
    for b in munged slurmctld slurmd sbatch sinfo squeue scancel scontrol ip; do
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

# ---- several nodes: one network namespace per node on a private bridge ---------------
# Names carry NET_ID (the subnet's third octet), unique on this machine while the cluster
# runs: bridge dcvqbr<id>, host ends of the veths dcvq<id>n<i>, namespaces dcvq-<id>-n<i>.
bridge_name() { echo "dcvqbr$NET_ID"; }
netns_name() { echo "dcvq-$NET_ID-$1"; }
node_addr() {
    if ((NODES == 1)); then echo 127.0.0.1; else echo "$SUBNET.$((${1#n} + 1))"; fi
}
ctld_addr() {
    if ((NODES == 1)); then echo 127.0.0.1; else echo "$SUBNET.1"; fi
}
# The controller's hostname (several nodes: in its own UTS namespace).
ctld_host() {
    if ((NODES == 1)); then echo localhost; else echo "$CTLD_HOST"; fi
}

# subnet_in_use A.B.C: an interface of this machine has an address in A.B.C.0/24, or the
# names of NET_ID (bridge, namespaces) are taken, e.g. by a cluster never taken down.
subnet_in_use() {
    local addrs namespaces # captured first: `grep -q` closing a pipe early fails it (pipefail)
    addrs=$(ip -4 -o addr show | awk '{print $4}')
    namespaces=$(ip netns list)
    grep -q "^${1//./\\.}\." <<<"$addrs" && return 0
    ip link show "$(bridge_name)" >/dev/null 2>&1 && return 0
    grep -q "^dcvq-$NET_ID-" <<<"$namespaces"
}

choose_subnet() {
    local c
    if [[ -n ${DCVQ_SLURM_SUBNET:-} ]]; then
        [[ $DCVQ_SLURM_SUBNET =~ ^[0-9]+\.[0-9]+\.([0-9]+)$ ]] ||
            die "DCVQ_SLURM_SUBNET=$DCVQ_SLURM_SUBNET: give a /24 as a.b.c (e.g. 10.218.7)"
        SUBNET=$DCVQ_SLURM_SUBNET NET_ID=${BASH_REMATCH[1]}
        if subnet_in_use "$SUBNET"; then
            die "DCVQ_SLURM_SUBNET=$SUBNET: $SUBNET.0/24, bridge $(bridge_name) or namespaces" \
                "dcvq-$NET_ID-* are in use on this machine; choose another subnet or leave it unset"
        fi
        return 0
    fi
    for ((c = 0; c < 256; c++)); do
        SUBNET=10.218.$c NET_ID=$c
        subnet_in_use "$SUBNET" || return 0
    done
    die "every 10.218.c.0/24 is in use on this machine; set DCVQ_SLURM_SUBNET=a.b.c"
}

# net_fail WHAT: a namespace or link operation failed: say what that needs.
net_fail() {
    die "could not $1: --nodes N > 1 needs network namespaces, veth and bridge links" \
        "(root with CAP_NET_ADMIN and CAP_SYS_ADMIN; in a container: --privileged)"
}

setup_network() {
    local br node ns host peer
    br=$(bridge_name)
    ip link add "$br" type bridge || net_fail "create bridge $br"
    { ip addr add "$(ctld_addr)/24" dev "$br" && ip link set "$br" up; } ||
        net_fail "give bridge $br the address $(ctld_addr)"
    while read -r node; do
        ns=$(netns_name "$node") host=dcvq${NET_ID}$node peer=dcvq${NET_ID}p${node#n}
        ip netns add "$ns" || net_fail "create network namespace $ns"
        ip link add "$host" type veth peer name "$peer" || net_fail "create veth $host"
        { ip link set "$peer" netns "$ns" &&
            ip link set "$host" master "$br" up &&
            ip -n "$ns" link set "$peer" name eth0 &&
            ip -n "$ns" addr add "$(node_addr "$node")/24" dev eth0 &&
            ip -n "$ns" link set eth0 up &&
            ip -n "$ns" link set lo up; } || net_fail "connect $ns to bridge $br"
    done < <(node_names)
    # The nodes' /etc/hosts (bind-mounted in their mount namespaces): every node resolves
    # every node name, its own hostname to its own address (gloo binds to that one).
    {
        echo "127.0.0.1 localhost"
        echo "$(ctld_addr) $CTLD_HOST"
        while read -r node; do echo "$(node_addr "$node") $node"; done < <(node_names)
    } >"$DIR/hosts"
}

# teardown_network: remove this cluster's namespaces and bridge (missing ones are fine).
# A namespace's veth goes with it, and its peer on the bridge with the veth.
teardown_network() {
    ((NODES > 1)) && [[ -n $NET_ID ]] || return 0
    local node
    while read -r node; do
        ip netns del "$(netns_name "$node")" 2>/dev/null || true
        ip link del "dcvq${NET_ID}$node" 2>/dev/null || true
    done < <(node_names)
    ip link del "$(bridge_name)" 2>/dev/null || true
}

write_config() {
    local cpus mem_mb node slurmd_files nodes_expr
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    if ((NODES == 1)); then
        slurmd_files="SlurmdSpoolDir=$DIR/spool
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmdLogFile=$LOG_DIR/slurmd.log"
        nodes_expr=localhost
    else
        # one slurmd per node: each its own spool dir, pid and log file (%n: the node name)
        slurmd_files="SlurmdSpoolDir=$DIR/spool/%n
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmdLogFile=$LOG_DIR/slurmd-%n.log"
        nodes_expr="n[1-$NODES]"
    fi
    cat >"$CONF" <<EOF
# Written by launch/local_slurm.sh: a local Slurm of $NODES node(s) for development and CI.
ClusterName=dcvq-local
SlurmctldHost=$(ctld_host)($(ctld_addr))
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=$CRED_EXPIRE
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation=$DIR/state
$slurmd_files
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
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
# sched_interval=1: a requeued job starts within a second of its begin time (default: 60 s)
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Trust the node lines below instead of draining a node when the hardware looks different.
SlurmdParameters=config_overrides
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
GresTypes=gpu
EOF
    while read -r node; do
        echo "NodeName=$node NodeHostname=$node NodeAddr=$(node_addr "$node") CPUs=$cpus" \
            "RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN" >>"$CONF"
    done < <(node_names)
    echo "PartitionName=$PARTITION Nodes=$nodes_expr Default=YES MaxTime=INFINITE State=UP" \
        >>"$CONF"
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
        --seed-file="$MUNGE_DIR/munged.seed" 8>&- 9>&- ||
        SHOW_LOGS=1 die "munged failed to start"
    await_pid munged
}

start_slurmctld() {
    slurmctld_pid >/dev/null && return 0
    # A fresh controller state every time: no stale jobs or node states from an old run.
    rm -rf "$DIR/state"
    install -d -m 0755 "$DIR/state"
    if ((NODES == 1)); then
        slurmctld -f "$CONF" 8>&- 9>&- || SHOW_LOGS=1 die "slurmctld failed to start"
    else
        # NoCtldInAddrAny binds the address the controller's hostname resolves to: in its
        # own UTS and mount namespace that is $(ctld_addr) on the bridge, reachable from the
        # nodes, and nothing else of this machine listens.
        # shellcheck disable=SC2016  # $1..$3 expand in the inner shell
        unshare --uts --mount --propagation private \
            sh -c 'hostname "$1" && mount --bind "$2" /etc/hosts && exec slurmctld -f "$3"' \
            sh "$CTLD_HOST" "$DIR/hosts" "$CONF" 8>&- 9>&- ||
            SHOW_LOGS=1 die "slurmctld failed to start"
    fi
    await_pid slurmctld
}

# start_slurmd NODE. Several nodes: in the node's network namespace, with its own UTS
# (hostname) and mount namespace (its /etc/hosts); the jobs it starts inherit all three.
start_slurmd() {
    local node=$1
    slurmd_pid "$node" >/dev/null && return 0
    if ((NODES == 1)); then
        slurmd -f "$CONF" -N "$node" 8>&- 9>&- || SHOW_LOGS=1 die "slurmd failed to start"
    else
        install -d -m 0755 "$DIR/spool/$node"
        # nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroup fs slurmd needs.
        # shellcheck disable=SC2016  # $1..$3 expand in the inner shell
        nsenter --net="/run/netns/$(netns_name "$node")" \
            unshare --uts --mount --propagation private \
            sh -c 'hostname "$1" && mount --bind "$2" /etc/hosts && exec slurmd -f "$3" -N "$1"' \
            sh "$node" "$DIR/hosts" "$CONF" 8>&- 9>&- ||
            SHOW_LOGS=1 die "slurmd of node $node failed to start"
    fi
    await_pid slurmd "$node"
}

# node_states: "NODE STATE" per line, from the controller.
node_states() { sinfo -h -N -o '%N %t' 2>/dev/null; }

wait_idle() {
    local deadline=$((SECONDS + TIMEOUT)) states="" node state ready
    while ((SECONDS < deadline)); do
        states=$(node_states || true)
        ready=0
        while read -r node state; do
            case $state in
            idle | mix | alloc | comp) ready=$((ready + 1)) ;;
            drain* | drng* | fail*)
                SHOW_LOGS=1 die "node $node is $state: $(sinfo -h -R -o '%E' 2>/dev/null || true)"
                ;;
            esac
        done <<<"$states"
        ((ready == NODES)) && return 0
        munged_pid >/dev/null || SHOW_LOGS=1 die "munged died while starting"
        slurmctld_pid >/dev/null || SHOW_LOGS=1 die "slurmctld died while starting"
        while read -r node; do
            slurmd_pid "$node" >/dev/null ||
                SHOW_LOGS=1 die "slurmd of node $node died while starting"
        done < <(node_names)
        sleep 0.2
    done
    SHOW_LOGS=1 die "nodes not idle after ${TIMEOUT}s (states: '${states:-no answer}')"
}

# parse_nodes ARG...: the N of `up [--nodes N]`; nothing without --nodes.
parse_nodes() {
    local n=""
    (($#)) || return 0
    while (($#)); do
        case $1 in
        --nodes) n=${2:-}; shift $(($# > 1 ? 2 : 1)) ;;
        --nodes=*) n=${1#--nodes=}; shift ;;
        *) die "up: unknown argument '$1' (usage: $0 up [--nodes N])" ;;
        esac
    done
    if ! [[ $n =~ ^[1-9][0-9]*$ ]] || ((n > 200)); then
        die "up --nodes '$n': give a number from 1 to 200 (one /24 subnet holds the nodes)"
    fi
    echo "$n"
}

up() {
    local want node
    want=$(parse_nodes "$@")
    ((EUID == 0)) || die "must run as root (installs packages, runs munged as user munge)"
    install -d -m 0755 "$DIR"
    # Serialise concurrent up/down on one dir. Daemons get `9>&-` so they never hold the lock.
    exec 9>"$DIR/.lock"
    flock -w 120 9 || die "another local_slurm.sh holds $DIR/.lock"
    install_packages
    install -d -m 0755 "$DIR/run" "$DIR/spool" "$LOG_DIR"
    load_layout
    # Rewrite the config and rebuild the nodes' network only when no daemon of this
    # cluster runs: a running cluster keeps its layout.
    if slurmctld_pid >/dev/null || any_slurmd; then
        ((${want:-$NODES} == NODES)) ||
            die "the cluster in $DIR runs with $NODES node(s), not $want: run \`$0 down\` first"
    else
        teardown_network # what a cluster that was never taken down left behind
        NODES=${want:-1} SUBNET="" NET_ID=""
        if ((NODES > 1)); then
            # Daemons get `8>&-` too: the lock is released once the network exists.
            exec 8>"$NET_LOCK"
            flock -w 120 8 || die "another local_slurm.sh holds $NET_LOCK"
            choose_subnet
            save_layout # before the network exists: `down` removes whatever was created
            setup_network
            exec 8>&-
        fi
        save_layout
        write_config
    fi
    start_munged
    start_slurmctld
    while read -r node; do start_slurmd "$node"; done < <(node_names)
    wait_idle
    log "up: $NODES node(s) ($(node_names | paste -sd, -)), $(node_states | awk '{print $2}' |
        sort -u | paste -sd/ -), in partition $PARTITION (SLURM_CONF=$CONF)"
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

# stop PID...: SIGTERM to all (each takes ~2 s to exit), wait up to 15 s, then SIGKILL.
# Their children are waited for too (slurmctld's helper slurmscriptd exits with it).
stop() {
    local pid i alive
    local -a pids=() kids=()
    for pid in "$@"; do
        mapfile -t kids < <(children_of "$pid")
        pids+=("$pid" "${kids[@]}")
        kill -TERM "$pid" 2>/dev/null || true
    done
    ((${#pids[@]})) || return 0
    for ((i = 0; i < 150; i++)); do
        alive=0
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
    load_layout
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
    local node pid
    local -a pids=()
    while read -r node; do
        pid=$(slurmd_pid "$node") && pids+=("$pid")
    done < <(node_names)
    pid=$(slurmctld_pid) && pids+=("$pid")
    pid=$(munged_pid) && pids+=("$pid")
    stop "${pids[@]}"
    teardown_network
    rm -f "$LAYOUT"
    log "down"
}

status() {
    local d node pid ok=0
    load_layout
    for d in munged slurmctld; do
        if pid=$("${d}_pid"); then
            echo "$d: running (pid $pid)"
        else
            echo "$d: not running"
            ok=1
        fi
    done
    while read -r node; do
        if pid=$(slurmd_pid "$node"); then
            echo "slurmd $node: running (pid $pid, address $(node_addr "$node"))"
        else
            echo "slurmd $node: not running"
            ok=1
        fi
    done < <(node_names)
    if ((ok == 0)); then
        sinfo || ok=1
    fi
    return $ok
}

# on_node NODE CMD...: run CMD in the namespaces of NODE's slurmd. A client outside them
# (srun, salloc) would listen on this machine's hostname, which the nodes cannot reach.
on_node() {
    local node=${1:-} pid
    load_layout
    (($# >= 2)) || die "usage: $0 exec NODE CMD... (NODE: $(node_names | paste -sd' ' -))"
    grep -qx -- "$node" <<<"$(node_names)" ||
        die "no node '$node' in this cluster (nodes: $(node_names | paste -sd' ' -))"
    ((NODES > 1)) || exec "${@:2}"
    pid=$(slurmd_pid "$node") || die "slurmd of node $node is not running: run \`$0 up\` first"
    exec nsenter --target "$pid" --net --uts --mount -- "${@:2}"
}

case ${1:-} in
up) up "${@:2}" ;;
down) down ;;
status) status ;;
env) echo "export SLURM_CONF=$CONF" ;;
exec) on_node "${@:2}" ;;
*)
    echo "usage: $0 up [--nodes N] | down | status | env | exec NODE CMD..." >&2
    exit 2
    ;;
esac
