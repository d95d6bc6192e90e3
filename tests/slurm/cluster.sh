#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for tests: munged, slurmctld
# and slurmd run as root from Debian 12's packages (SLURM 22.05), with every
# file they write (config, key, state, spool, logs, pid files) in a private
# state dir, so that nothing clashes with a system SLURM or munge.
#
#   tests/slurm/cluster.sh start    install the packages if missing, write the
#                                   config, start the daemons, wait (60 s at
#                                   most) for the node to be idle; on failure
#                                   print the daemons' logs, stop, exit 1
#   tests/slurm/cluster.sh stop     cancel every job, stop exactly the daemons
#                                   that start started (their pid files), and
#                                   wait for them to exit
#   tests/slurm/cluster.sh status   the daemons' pids, sinfo and squeue
#
# Clients must read the same config: `source tests/slurm/env.sh` (it sets
# SLURM_CONF; DFAR_SLURM_DIR picks the state dir, default /tmp/dfar-slurm).
# The node is this host (`hostname -s`, at 127.0.0.1) with the CPUs that
# `slurmd -C` reports; partitions `debug` (the default) and `gpu` (the name
# cluster/slurm/*.sbatch ask for) both hold it. No accounting, no cgroups
# (proctrack/linuxproc, task/none): it runs in containers without systemd.
set -euo pipefail
# shellcheck source=tests/slurm/env.sh
source "$(dirname "$0")/env.sh"
DIR=$DFAR_SLURM_DIR
PACKAGES=(slurmctld slurmd slurm-client munge)
DAEMONS=(slurmd slurmctld munged) # stop order
START_TIMEOUT_S=60
STOP_TIMEOUT_S=30

note() { echo "cluster.sh: $*" >&2; }
die() {
  note "error: $*"
  exit 1
}

# ---- packages ------------------------------------------------------------------
installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Debian's postinst would start the daemons with the system config; a
# policy-rc.d that answers 101 stops that (containers often have one already).
install_packages() {
  local p missing=()
  for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "installing ${missing[*]} needs root"
  command -v apt-get >/dev/null || die "no apt-get to install ${missing[*]}"
  note "installing ${missing[*]}"
  local policy=/usr/sbin/policy-rc.d made=0 rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made=1
  fi
  local -a apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends)
  if ! "${apt[@]}" "${missing[@]}" >"$DIR/apt.log" 2>&1; then
    # A fresh machine may have no package lists yet.
    { apt-get update -qq && "${apt[@]}" "${missing[@]}"; } >>"$DIR/apt.log" 2>&1 || rc=$?
  fi
  [ "$made" -eq 1 ] && rm -f "$policy"
  [ "$rc" -eq 0 ] || die "apt-get install ${missing[*]} failed:"$'\n'"$(tail -20 "$DIR/apt.log")"
}

# ---- pid files -------------------------------------------------------------------
pidfile() { echo "$DIR/run/$1.pid"; }

# alive NAME: prints the pid from NAME's pid file when that process is alive
# and is NAME (a stale pid file, or a reused pid, counts as not running).
alive() {
  local f pid comm
  f=$(pidfile "$1")
  [ -s "$f" ] || return 1
  pid=$(tr -cd '0-9' <"$f")
  [ -n "$pid" ] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [ "$comm" = "$1" ] || return 1
  echo "$pid"
}

# ---- config ------------------------------------------------------------------------
# free_ports N: N TCP ports that nothing listens on, from a range below the
# kernel's ephemeral ports (so no outgoing connection takes them meanwhile).
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
want, found = int(sys.argv[1]), []
for port in random.sample(range(20000, 30000), 400):
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", port))
        found.append(port)
    except OSError:
        pass
    finally:
        s.close()
    if len(found) == want:
        break
print(*found)
PY
}

write_config() {
  local node=$1 ctld_port=$2 d_port=$3 hw
  # "NodeName=<host> CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2
  # ThreadsPerCore=1 RealMemory=..." for this machine, named as we name it.
  hw=$(slurmd -C | head -n 1)
  [[ $hw == NodeName=* ]] || die "slurmd -C printed: $hw"
  hw="NodeName=$node ${hw#NodeName=* }"
  cat >"$SLURM_CONF" <<EOF
# Written by tests/slurm/cluster.sh: a private one-node test cluster.
ClusterName=dfar-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also delays a requeued job's restart (default 120 s).
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=5
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$DIR/etc/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MaxJobCount=100000
# Finished jobs stay in \`scontrol show job\` for an hour (there is no sacct).
MinJobAge=3600
JobRequeue=1
KillWait=10
# Pending jobs (a requeued one, once its BeginTime passes) start within seconds.
SchedulerParameters=sched_interval=2,bf_interval=5
InactiveLimit=0
MailProg=/bin/true
$hw NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node Default=NO MaxTime=INFINITE State=UP
EOF
  : >"$DIR/etc/plugstack.conf"
}

# munged checks that its key is private and its directories are not writable
# by others, and its socket dir searchable by all: both dirs are 0755.
ensure_key() {
  local key=$DIR/munge/munge.key
  [ -s "$key" ] && return 0
  if command -v mungekey >/dev/null; then
    mungekey --create --keyfile="$key"
  else
    dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
  fi
  chmod 400 "$key"
}

# ---- start / stop ------------------------------------------------------------------
print_logs() {
  local f
  for f in "$DIR"/log/*.log; do
    [ -f "$f" ] || continue
    echo "---- $f (last 40 lines)"
    tail -n 40 "$f"
  done
}

node_state() {
  sinfo -h -N -n "$1" -o '%T' 2>/dev/null | head -n 1
}

start_failed() {
  note "error: $*"
  print_logs >&2
  stop_cluster || true
  exit 1
}

# munged insists that every directory above its socket is searchable by all.
check_ancestors() {
  local d
  d=$(cd "$DIR/.." && pwd)
  while :; do
    [ "$(($(stat -c '0%a' "$d") & 01))" -eq 1 ] ||
      die "munged needs every directory above DFAR_SLURM_DIR=$DIR searchable by all; $d is $(stat -c %A "$d") (mktemp -d makes 0700 dirs)"
    [ "$d" = / ] && return 0
    d=$(dirname "$d")
  done
}

start_cluster() {
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  check_ancestors
  install_packages
  local name running=()
  for name in "${DAEMONS[@]}"; do
    if alive "$name" >/dev/null; then running+=("$name"); fi
  done
  if [ ${#running[@]} -eq ${#DAEMONS[@]} ]; then
    note "already running in $DIR"
    return 0
  fi
  [ ${#running[@]} -eq 0 ] || die "only ${running[*]} running in $DIR: run '$0 stop' first"

  # A fresh cluster each start: no jobs, config or logs from an earlier one.
  rm -rf "${DIR:?}/etc" "$DIR/spool" "$DIR/log" "$DIR/run" "$DIR/munge/munge.socket"*
  mkdir -p "$DIR/etc" "$DIR/spool/ctld" "$DIR/spool/d" "$DIR/log" "$DIR/run" "$DIR/munge"
  chmod 755 "$DIR/munge"
  local node ports
  node=$(hostname -s)
  read -r -a ports <<<"$(free_ports 2)"
  [ ${#ports[@]} -eq 2 ] || die "found no two free TCP ports in 20000-29999"
  write_config "$node" "${ports[0]}" "${ports[1]}"
  ensure_key

  munged --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$(pidfile munged)" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed" >"$DIR/log/munged.out" 2>&1 ||
    start_failed "munged did not start: $(cat "$DIR/log/munged.out")"
  munge -S "$DIR/munge/munge.socket" -n </dev/null | unmunge -S "$DIR/munge/munge.socket" >/dev/null 2>&1 ||
    start_failed "munge cannot encode and decode a credential with $DIR/munge/munge.socket"
  # -c: no state recovered (there is none).
  slurmctld -c >"$DIR/log/slurmctld.out" 2>&1 || start_failed "slurmctld did not start: $(cat "$DIR/log/slurmctld.out")"
  slurmd -N "$node" >"$DIR/log/slurmd.out" 2>&1 || start_failed "slurmd did not start: $(cat "$DIR/log/slurmd.out")"

  local t state=""
  for ((t = 0; t < START_TIMEOUT_S * 2; t++)); do
    state=$(node_state "$node")
    [ "$state" = idle ] && break
    for name in "${DAEMONS[@]}"; do
      [ "$t" -lt 4 ] || alive "$name" >/dev/null || start_failed "$name exited"
    done
    sleep 0.5
  done
  [ "$state" = idle ] || start_failed "node $node is '${state:-unknown}', not idle, after ${START_TIMEOUT_S}s"
  note "up: node $node idle ($(slurmd -C | head -n 1 | grep -o 'CPUs=[0-9]*')), SlurmctldPort ${ports[0]}, SlurmdPort ${ports[1]}"
  echo "export SLURM_CONF=$SLURM_CONF"
}

# cancel_jobs: every job of this private cluster, and wait (30 s at most) until
# none is left, so that no slurmstepd or rank outlives the daemons.
cancel_jobs() {
  alive slurmctld >/dev/null || return 0
  scancel --quiet --user="$(id -un)" 2>/dev/null || true
  local t
  for ((t = 0; t < 60; t++)); do
    [ -z "$(squeue -h -o %i 2>/dev/null)" ] && return 0
    sleep 0.5
  done
  note "jobs still listed after 30 s: $(squeue -h -o '%i %T' 2>/dev/null | tr '\n' ' ')"
}

# stray_steps: slurmstepd processes of this cluster (they inherit slurmd's
# SLURM_CONF), should any survive their job.
stray_steps() {
  local pid
  for pid in $(pgrep -x slurmstepd || true); do
    { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_CONF" && echo "$pid"
  done
  return 0
}

stop_pid() {
  local name=$1 pid=$2 t
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((t = 0; t < STOP_TIMEOUT_S * 10; t++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  note "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT_S}s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((t = 0; t < 50; t++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  note "error: $name (pid $pid) did not exit"
  return 1
}

stop_cluster() {
  local name pid rc=0
  [ -d "$DIR" ] || return 0
  cancel_jobs
  for name in "${DAEMONS[@]}"; do
    if pid=$(alive "$name"); then
      stop_pid "$name" "$pid" || rc=1
    fi
    rm -f "$(pidfile "$name")"
  done
  for pid in $(stray_steps); do
    note "slurmstepd $pid outlived its job; stopping it"
    stop_pid slurmstepd "$pid" || rc=1
  done
  return "$rc"
}

status_cluster() {
  local name pid rc=0
  for name in "${DAEMONS[@]}"; do
    if pid=$(alive "$name"); then echo "$name: running, pid $pid"; else
      echo "$name: not running"
      rc=1
    fi
  done
  echo "SLURM_CONF=$SLURM_CONF"
  if [ "$rc" -eq 0 ]; then
    sinfo
    squeue
  fi
  return "$rc"
}

case "${1:-}" in
  start) start_cluster ;;
  stop) stop_cluster ;;
  status) status_cluster ;;
  *)
    echo "usage: $0 start|stop|status   (state in \$DFAR_SLURM_DIR, default /tmp/dfar-slurm)" >&2
    exit 2
    ;;
esac
