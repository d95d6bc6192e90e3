# shellcheck shell=bash
# Shared functions for launch/*.sh and cluster/slurm/*.sbatch: sourced, not run.
#
# How ranks find their GPU: dfar binds itself. Each rank reads its local rank
# from the launcher (OMPI_COMM_WORLD_LOCAL_RANK under mpirun, SLURM_LOCALID
# under srun, LOCAL_RANK under torchrun) and takes CUDA device
# (local rank mod visible devices) (src/runtime/placement.cpp; `dfar config
# device` prints it). Both launch styles work: every rank seeing all GPUs
# (local rank k takes cuda:k), and one GPU per rank (--gpus-per-task=1, a
# per-rank CUDA_VISIBLE_DEVICES, one GPU per pod: every rank takes cuda:0).
# CUDA_VISIBLE_DEVICES set for the whole job (e.g. "2,3") is passed through.
#
# Environment read here (all optional):
#   NP              ranks (default 1)
#   HOSTFILE        OpenMPI hostfile ("host slots=N" lines); default: this host only
#   THREADS         OMP_NUM_THREADS per rank (default: cores / ranks on a host, at least 1)
#   DFAR            the dfar binary (default build/bin/dfar)
#   MPIRUN          the OpenMPI launcher (default mpirun); split on whitespace
#   EXTRA_MPI_ARGS  more mpirun arguments; split on whitespace, no quoting
#   GPUS_PER_HOST   GPUs per host for --dry-run's table (default: `nvidia-smi -L` here)
#   RUN_DIR         passed as run.dir=RUN_DIR; enables RESUME=auto
#   RESUME          auto (default): add --resume when RUN_DIR/checkpoints/latest exists;
#                   yes: always; no: never

# dfar_die CODE MESSAGE...: prints "<script>: error: MESSAGE" to stderr and exits CODE.
dfar_die() {
  local code=$1
  shift
  echo "$(basename "$0"): error: $*" >&2
  exit "$code"
}

dfar_note() {
  echo "$(basename "$0"): $*" >&2
}

# dfar_is_count VALUE: true for a positive decimal integer (no sign, no leading zero).
dfar_is_count() {
  [[ $1 =~ ^[1-9][0-9]{0,6}$ ]]
}

dfar_cores() {
  local n
  n=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
  dfar_is_count "$n" || n=1
  echo "$n"
}

# dfar_gpu_count: GPUs a rank on this host can see: GPUS_PER_HOST if set, else
# the `nvidia-smi -L` count, narrowed by CUDA_VISIBLE_DEVICES when that is set.
dfar_gpu_count() {
  if [ -n "${GPUS_PER_HOST:-}" ]; then
    [[ $GPUS_PER_HOST =~ ^[0-9]+$ ]] || dfar_die 2 "GPUS_PER_HOST='$GPUS_PER_HOST' is not a non-negative integer"
    echo "$GPUS_PER_HOST"
    return
  fi
  local n=0
  if command -v nvidia-smi >/dev/null 2>&1; then
    n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
  fi
  if [ "$n" -gt 0 ] && [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
    local visible=0 list=${CUDA_VISIBLE_DEVICES// /}
    if [ -n "$list" ] && [ "$list" != "-1" ] && [ "$list" != "NoDevFiles" ]; then
      visible=$(($(tr -cd ',' <<<"$list" | wc -c) + 1))
    fi
    [ "$visible" -lt "$n" ] && n=$visible
  fi
  echo "$n"
}

# dfar_parse_hostfile FILE: fills DFAR_HOSTS and DFAR_SLOTS (parallel arrays,
# hosts in file order, repeated hosts merged). Comments (#) and blank lines are
# skipped. A line without slots= counts one slot (OpenMPI may instead use the
# host's core count; write slots= explicitly for GPU hosts).
dfar_parse_hostfile() {
  local file=$1 line host word slots i found
  local -a words
  DFAR_HOSTS=()
  DFAR_SLOTS=()
  [ -f "$file" ] || dfar_die 2 "HOSTFILE '$file' does not exist"
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%%#*}
    read -r -a words <<<"$line"
    [ ${#words[@]} -eq 0 ] && continue
    host=${words[0]}
    slots=1
    for word in "${words[@]:1}"; do
      case "$word" in
        slots=*)
          slots=${word#slots=}
          dfar_is_count "$slots" || dfar_die 2 "HOSTFILE '$file': bad '$word' for host $host"
          ;;
      esac
    done
    found=0
    for i in "${!DFAR_HOSTS[@]}"; do
      if [ "${DFAR_HOSTS[$i]}" = "$host" ]; then
        DFAR_SLOTS[i]=$((DFAR_SLOTS[i] + slots))
        found=1
      fi
    done
    if [ "$found" -eq 0 ]; then
      DFAR_HOSTS+=("$host")
      DFAR_SLOTS+=("$slots")
    fi
  done <"$file"
  [ ${#DFAR_HOSTS[@]} -gt 0 ] || dfar_die 2 "HOSTFILE '$file' lists no hosts"
}

# dfar_oversubscribing: true when EXTRA_MPI_ARGS asks mpirun to oversubscribe.
dfar_oversubscribing() {
  [[ " ${EXTRA_MPI_ARGS:-} " == *" --oversubscribe "* || " ${EXTRA_MPI_ARGS:-} " == *" -oversubscribe "* ]]
}

# dfar_layout NP: where each rank runs, as mpirun --map-by slot places them:
# fills DFAR_RANK_HOST[r] and DFAR_RANK_LOCAL[r], and DFAR_RANKS_PER_HOST (the
# most ranks on any one host).
dfar_layout() {
  local np=$1 r h total=0
  DFAR_RANK_HOST=()
  DFAR_RANK_LOCAL=()
  if [ -z "${HOSTFILE:-}" ]; then
    for ((r = 0; r < np; r++)); do
      DFAR_RANK_HOST[r]=localhost
      DFAR_RANK_LOCAL[r]=$r
    done
    DFAR_RANKS_PER_HOST=$np
    return
  fi
  dfar_parse_hostfile "$HOSTFILE"
  for h in "${DFAR_SLOTS[@]}"; do total=$((total + h)); done
  if [ "$np" -gt "$total" ] && ! dfar_oversubscribing; then
    dfar_die 2 "NP=$np exceeds the $total slot(s) in HOSTFILE '$HOSTFILE' (add slots, lower NP, or set EXTRA_MPI_ARGS=--oversubscribe)"
  fi
  local -a used=()
  for h in "${!DFAR_HOSTS[@]}"; do used[h]=0; done
  # Fill each host's slots in order; past the total, wrap round (oversubscribe).
  h=0
  for ((r = 0; r < np; r++)); do
    if [ "$r" -lt "$total" ]; then
      while [ "${used[h]}" -ge "${DFAR_SLOTS[h]}" ]; do h=$((h + 1)); done
    else
      h=$(((r - total) % ${#DFAR_HOSTS[@]}))
    fi
    DFAR_RANK_HOST[r]=${DFAR_HOSTS[h]}
    DFAR_RANK_LOCAL[r]=${used[h]}
    used[h]=$((used[h] + 1))
  done
  DFAR_RANKS_PER_HOST=1
  for h in "${used[@]}"; do
    [ "$h" -gt "$DFAR_RANKS_PER_HOST" ] && DFAR_RANKS_PER_HOST=$h
  done
  return 0
}

# dfar_checkpoint_exists RUN_DIR: true when RUN_DIR/checkpoints/latest exists.
dfar_checkpoint_exists() {
  [ -f "$1/checkpoints/latest" ]
}

# dfar_latest_checkpoint RUN_DIR: prints the newest complete checkpoint
# directory. The binary owns the rule (`dfar ckpt latest`: `latest` when it
# names a complete step dir, else the highest complete step-*); fails if
# there is none or the binary is not built.
dfar_latest_checkpoint() {
  local bin=${DFAR_BIN:-${DFAR:-build/bin/dfar}}
  [ -x "$bin" ] || dfar_die 2 "'$bin' is not an executable (build it, or set DFAR): it finds the latest checkpoint"
  "$bin" ckpt latest "$1" 2>/dev/null
}

# dfar_has_arg WORD ARGS...: true when WORD is one of ARGS.
dfar_has_arg() {
  local want=$1 a
  shift
  for a in "$@"; do [ "$a" = "$want" ] && return 0; done
  return 1
}

# dfar_device_override ARGS...: the value of a model.device=... override, if any.
dfar_device_override() {
  local a value=""
  for a in "$@"; do
    case "$a" in model.device=*) value=${a#model.device=} ;; esac
  done
  echo "$value"
}

# dfar_check_common: validates NP, THREADS, RESUME and GPUS_PER_HOST; sets
# DFAR_NP, DFAR_BIN and DFAR_GPUS.
dfar_check_common() {
  DFAR_NP=${NP:-1}
  dfar_is_count "$DFAR_NP" || dfar_die 2 "NP='$DFAR_NP' is not a positive integer (the number of ranks)"
  if [ -n "${THREADS:-}" ]; then
    dfar_is_count "$THREADS" || dfar_die 2 "THREADS='$THREADS' is not a positive integer (OMP_NUM_THREADS per rank)"
  fi
  DFAR_BIN=${DFAR:-build/bin/dfar}
  case "${RESUME:-auto}" in auto | yes | no) ;; *) dfar_die 2 "RESUME='$RESUME' must be auto, yes or no" ;; esac
  DFAR_GPUS=$(dfar_gpu_count) || exit 2
}

# dfar_check_config REQUIRED: validates CONFIG (exit 2 when required and unset,
# or set and not a readable file).
dfar_check_config() {
  if [ -z "${CONFIG:-}" ]; then
    [ "$1" = required ] && dfar_die 2 "CONFIG is not set: CONFIG=configs/dfar-lr.yaml $0 ..."
    return 0
  fi
  if [ ! -f "$CONFIG" ] || [ ! -r "$CONFIG" ]; then
    dfar_die 2 "CONFIG '$CONFIG' is not a readable file"
  fi
}

# dfar_threads_per_rank RANKS_ON_A_HOST: THREADS, or cores / ranks (>= 1).
dfar_threads_per_rank() {
  if [ -n "${THREADS:-}" ]; then
    echo "$THREADS"
    return
  fi
  local t=$(($(dfar_cores) / $1))
  [ "$t" -lt 1 ] && t=1
  echo "$t"
}

# dfar_forwarded_env: names of set variables that mpirun must pass to ranks.
dfar_forwarded_env() {
  local name
  while IFS= read -r name; do
    case "$name" in NCCL_* | DFAR_*) echo "$name" ;; esac
  done < <(compgen -e | LC_ALL=C sort)
  [ -n "${CUDA_VISIBLE_DEVICES+set}" ] && echo CUDA_VISIBLE_DEVICES
  echo PATH
  [ -n "${LD_LIBRARY_PATH:-}" ] && echo LD_LIBRARY_PATH
  return 0
}

# dfar_build_mpirun THREADS DFAR-ARGS...: fills DFAR_CMD with the full mpirun command.
dfar_build_mpirun() {
  local threads=$1 name
  shift
  local -a mpirun extra
  read -r -a mpirun <<<"${MPIRUN:-mpirun}"
  read -r -a extra <<<"${EXTRA_MPI_ARGS:-}"
  DFAR_CMD=("${mpirun[@]}" -np "$DFAR_NP")
  [ -n "${HOSTFILE:-}" ] && DFAR_CMD+=(--hostfile "$HOSTFILE")
  DFAR_CMD+=(--map-by slot --bind-to none)
  # OpenMPI refuses root without this (containers commonly run as root).
  [ "$(id -u)" -eq 0 ] && DFAR_CMD+=(--allow-run-as-root)
  # One host: NP is the user's deliberate choice, even past the core count.
  if [ -z "${HOSTFILE:-}" ] && ! dfar_oversubscribing; then DFAR_CMD+=(--oversubscribe); fi
  DFAR_CMD+=(-x "OMP_NUM_THREADS=$threads")
  while IFS= read -r name; do
    [ -n "$name" ] && DFAR_CMD+=(-x "$name")
  done < <(dfar_forwarded_env)
  DFAR_CMD+=("${extra[@]}" "$DFAR_BIN" "$@")
}

# dfar_quote WORDS...: one line that a shell reads back as WORDS: plain words
# as they are, the rest in single quotes.
dfar_quote() {
  local out="" w q="'"
  for w in "$@"; do
    if [[ $w =~ ^[A-Za-z0-9_./:=,+@%^-]+$ ]]; then
      out+="$w "
    else
      out+="'${w//$q/$q\\$q$q}' "
    fi
  done
  echo "${out% }"
}

# dfar_print_topology THREADS DFAR-ARGS...: one row per rank.
dfar_print_topology() {
  local threads=$1 r local_rank device gpus forced
  shift
  gpus=$DFAR_GPUS
  forced=$(dfar_device_override "$@")
  echo "topology: $DFAR_NP rank(s), $threads thread(s) each, $gpus GPU(s) per host"
  printf '  %-5s %-32s %-10s %-8s %s\n' rank host local_rank device threads
  # The binary owns the device rule (`dfar config device`): one call for all ranks.
  local -a devices=()
  if [ -x "$DFAR_BIN" ]; then
    mapfile -t devices < <("$DFAR_BIN" config device --device "${forced:-auto}" --gpus "$gpus" \
      "${DFAR_RANK_LOCAL[@]:0:DFAR_NP}" 2>/dev/null)
  fi
  for ((r = 0; r < DFAR_NP; r++)); do
    local_rank=${DFAR_RANK_LOCAL[r]}
    device=${devices[r]:-"?"}
    printf '  %-5s %-32s %-10s %-8s %s\n' "$r" "${DFAR_RANK_HOST[r]}" "$local_rank" "$device" "$threads"
  done
  [ -x "$DFAR_BIN" ] || echo "note: devices show as ? until $DFAR_BIN is built (it owns the device rule)"
  [ -x "$DFAR_BIN" ] && [ ${#devices[@]} -eq 0 ] && echo "warning: no device for model.device=${forced:-auto} with $gpus GPU(s) per host"
  if [ "$gpus" -gt 0 ] && [ "$forced" != cpu ] && [ "$DFAR_RANKS_PER_HOST" -gt "$gpus" ]; then
    echo "warning: $DFAR_RANKS_PER_HOST rank(s) on a host but $gpus GPU(s): ranks share GPUs (local rank k takes cuda:(k mod $gpus)); lower NP or slots, or add model.device=cpu"
  fi
  if [ -n "${HOSTFILE:-}" ] && [ -z "${GPUS_PER_HOST:-}" ]; then
    echo "note: GPU counts of other hosts are assumed equal to this host's (set GPUS_PER_HOST to show another)"
  elif [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "note: inside SLURM job $SLURM_JOB_ID mpirun places ranks on the allocation's nodes, not only this host"
  fi
  return 0
}

# dfar_resume_args ARGS...: prints "--resume" when RESUME asks for it (see top).
dfar_resume_args() {
  dfar_has_arg --resume "$@" && return 0
  dfar_has_arg --overwrite "$@" && return 0
  case "${RESUME:-auto}" in
    yes) echo --resume ;;
    no) ;;
    auto)
      if [ -n "${RUN_DIR:-}" ] && dfar_checkpoint_exists "$RUN_DIR"; then echo --resume; fi
      ;;
  esac
  return 0
}

# dfar_run_forwarding_signals SIGNAL CMD...: runs CMD in the background and
# waits for it. SIGTERM, SIGUSR1 and SIGINT sent to this shell are passed on
# to CMD as SIGNAL (SIGINT as SIGINT), once per signal kind. Returns CMD's
# exit status; sets DFAR_STOPPED_BY to TERM or USR1 when one arrived.
#
# Why translate: mpirun answers SIGTERM by killing every rank within seconds,
# and srun answers it with SIGKILL, but both pass SIGUSR1 on to the ranks
# unchanged, and dfar takes SIGUSR1 as "checkpoint now and exit 0". So
# `--signal=B:TERM@300` (SLURM) and pod termination (Kubernetes) reach this
# shell as SIGTERM and reach the ranks as SIGUSR1.
dfar_run_forwarding_signals() {
  local sig=$1
  shift
  DFAR_STOPPED_BY=""
  DFAR_CHILD=""
  trap 'dfar__forward TERM' TERM
  trap 'dfar__forward USR1' USR1
  trap 'dfar__forward INT' INT
  "$@" &
  DFAR_CHILD=$!
  DFAR_FORWARD_SIGNAL=$sig
  local rc=0
  # `wait` returns early (status > 128) when a trapped signal arrives; keep
  # waiting until the child itself has gone.
  while :; do
    rc=0
    wait "$DFAR_CHILD" || rc=$?
    kill -0 "$DFAR_CHILD" 2>/dev/null || break
  done
  trap - TERM USR1 INT
  return "$rc"
}

dfar__forward() {
  local got=$1 send=$DFAR_FORWARD_SIGNAL
  [ "$got" = INT ] && send=INT
  # One forward per kind: a second SIGTERM must not turn into a second stop
  # request while the ranks are writing their checkpoint.
  case " ${DFAR__FORWARDED:-} " in *" $got "*) return ;; esac
  DFAR__FORWARDED="${DFAR__FORWARDED:-} $got"
  [ "$got" != INT ] && DFAR_STOPPED_BY=$got
  echo "$(basename "$0"): got SIG$got, sending SIG$send to pid $DFAR_CHILD" >&2
  [ -n "$DFAR_CHILD" ] && kill -s "$send" "$DFAR_CHILD" 2>/dev/null
  return 0
}

# dfar_slurm_finish RC: the end of a SLURM training job. After a SIGTERM
# (--signal=B:TERM@N before the time limit, or preemption with
# PreemptParameters=send_user_signal) that the ranks answered by checkpointing
# and exiting 0, requeue this job (at most MAX_RESTARTS times, default 20):
# the next attempt finds checkpoints/latest and adds --resume. SIGUSR1 (from
# `scancel --batch --signal=USR1 JOB`) checkpoints and ends without requeue,
# and so does a plain `scancel JOB` (its SIGTERM finds the job no longer RUNNING).
# Exits with RC otherwise.
dfar_slurm_finish() {
  local rc=$1 restarts=${SLURM_RESTART_COUNT:-0}
  if [ "$rc" -ne 0 ]; then
    dfar_note "dfar exited $rc; not requeueing"
    exit "$rc"
  fi
  if [ "${DFAR_STOPPED_BY:-}" != TERM ]; then
    [ -n "${DFAR_STOPPED_BY:-}" ] && dfar_note "stopped by SIG$DFAR_STOPPED_BY after checkpointing; not requeueing"
    exit 0
  fi
  if [ "$restarts" -ge "${MAX_RESTARTS:-20}" ]; then
    dfar_note "checkpointed, but this job was already requeued $restarts time(s) (MAX_RESTARTS); resubmit to continue"
    exit 1
  fi
  # A plain `scancel JOB` also sends the batch shell SIGTERM: the job is then
  # no longer RUNNING (COMPLETING/CANCELLED), and a cancelled job stays cancelled.
  local state
  state=$(scontrol show job "${SLURM_JOB_ID:?}" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -1)
  if [ -n "$state" ] && [ "$state" != RUNNING ]; then
    dfar_note "checkpointed; job ${SLURM_JOB_ID} is $state (cancelled?), not requeueing"
    exit 0
  fi
  dfar_note "checkpointed before the time limit; requeueing job ${SLURM_JOB_ID:-?} (restart $((restarts + 1)))"
  # Under preemption with PreemptMode=REQUEUE Slurm requeues the job itself and
  # this call fails harmlessly.
  scontrol requeue "${SLURM_JOB_ID:?}" || dfar_note "scontrol requeue failed (already requeued or cancelled?)"
  exit 0
}

# dfar_mpi_main SUBCOMMAND ARGS...: the body of launch/train.sh and eval.sh.
dfar_mpi_main() {
  local sub=$1 dry=0
  shift
  if [ "${1:-}" = --dry-run ]; then
    dry=1
    shift
  fi
  dfar_check_common
  local -a args=("$sub")
  if [ "$sub" = train ]; then
    dfar_check_config required
    args+=(--config "$CONFIG")
    local resume
    resume=$(dfar_resume_args "$@")
    [ -n "$resume" ] && args+=("$resume")
  else
    dfar_check_config optional
    [ -n "${CONFIG:-}" ] && args+=(--config "$CONFIG")
    if [ -n "${RUN_DIR:-}" ] && ! dfar_has_arg --checkpoint "$@" && ! dfar_has_arg --model "$@"; then
      local ckpt
      ckpt=$(dfar_latest_checkpoint "$RUN_DIR") || dfar_die 2 "no checkpoint under RUN_DIR '$RUN_DIR' (pass --checkpoint DIR or --model PATH)"
      args+=(--checkpoint "$ckpt")
    fi
  fi
  [ -n "${RUN_DIR:-}" ] && args+=("run.dir=$RUN_DIR")
  args+=("$@")

  dfar_layout "$DFAR_NP"
  local threads
  threads=$(dfar_threads_per_rank "$DFAR_RANKS_PER_HOST")
  dfar_build_mpirun "$threads" "${args[@]}"

  if [ "$dry" -eq 1 ]; then
    echo "mpirun command: $(dfar_quote "${DFAR_CMD[@]}")"
    dfar_print_topology "$threads" "${args[@]}"
    [ -x "$DFAR_BIN" ] || echo "note: $DFAR_BIN is not an executable here yet (set DFAR or build first)"
    exit 0
  fi

  command -v "${DFAR_CMD[0]}" >/dev/null 2>&1 || dfar_die 2 "'${DFAR_CMD[0]}' not found (install OpenMPI or set MPIRUN)"
  [ -x "$DFAR_BIN" ] || dfar_die 2 "'$DFAR_BIN' is not an executable (build it, or set DFAR)"
  echo "mpirun command: $(dfar_quote "${DFAR_CMD[@]}")" >&2
  local rc=0
  dfar_run_forwarding_signals USR1 "${DFAR_CMD[@]}" || rc=$?
  if [ "$rc" -eq 0 ] && [ -n "$DFAR_STOPPED_BY" ] && [ "$sub" = train ]; then
    # The ranks checkpointed and stopped early: report "interrupted", so that
    # a restarting supervisor (a Kubernetes Job, a shell loop) runs us again.
    dfar_note "stopped by SIG$DFAR_STOPPED_BY after checkpointing; rerun with RESUME=auto (or --resume) to continue"
    rc=$((128 + $(kill -l "$DFAR_STOPPED_BY")))
  fi
  exit "$rc"
}
