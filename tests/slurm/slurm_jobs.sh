#!/usr/bin/env bash
# cluster/slurm/*.sbatch on a real one-node SLURM cluster (tests/slurm/cluster.sh:
# Debian 12's SLURM 22.05, munge, srun --mpi=pmix), on CPU with the tiny LoRA
# config, 2 ranks of 1 thread:
#   a. train-1node.sbatch runs to COMPLETED: the reference run;
#   b. preemption: `scancel --batch --signal=TERM` (what --signal=B:TERM@300
#      sends) mid-run; the ranks checkpoint, the script requeues the job, the
#      next attempt resumes, and the final parameters equal (a)'s bit for bit,
#      with every step in metrics.jsonl exactly once;
#   c. hard kill: rank 1 SIGKILLed after a checkpoint (the job FAILs), a partial
#      checkpoint left behind, a resubmission that resumes from the last
#      complete one and ends bit-equal to (a), each step logged once;
#   d. eval.sbatch on (a)'s newest checkpoint writes its report;
#   e. train-multinode.sbatch with --nodes=1;
#   f. mpirun (launch/train.sh) inside an sbatch allocation;
#   g. a plain scancel of a running training job: the ranks checkpoint and the
#      job ends CANCELLED, not requeued.
# The scripts run unchanged: only sbatch options that override their #SBATCH
# lines (ranks, GPUs, CPUs, time, output) and their documented variables.
# Needs root (it installs and starts the daemons); exits 77 (skipped) without
# root or apt-get. Every daemon, step and rank it started is gone at the end.
# $out comes from lib.sh's expect_ok / expect_error (SC2154).
# shellcheck disable=SC2154
# shellcheck source=tests/cli/lib.sh
source "$(dirname "$0")/../cli/lib.sh"
case "$DFAR" in /*) ;; *) DFAR=$PWD/$DFAR ;; esac
SHARED=$(cd "$SHARED" 2>/dev/null && pwd) || { echo "FAIL: no shared dir (DFAR_SHARED) at ${DFAR_SHARED:-../shared}"; exit 1; }
cd "$(dirname "$0")/../.." || exit 1
HERE=tests/slurm

[ -f "$SHARED/data/dfar/DFAR_trainset.csv" ] || { echo "FAIL: no $SHARED/data/dfar/DFAR_trainset.csv"; exit 1; }
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "SKIP: needs root and apt-get to install and run slurmctld, slurmd and munged"
  exit 77
fi

# Not under $TMP: munged wants every directory above its socket world-searchable.
DFAR_SLURM_DIR=$(mktemp -d /tmp/dfar-slurm-test.XXXXXX)
export DFAR_SLURM_DIR
# shellcheck source=tests/slurm/env.sh
source "$HERE/env.sh"
started=0
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  [ "$started" -eq 1 ] && "$HERE/cluster.sh" stop >/dev/null 2>&1
  rm -rf "$TMP" "$DFAR_SLURM_DIR"
}
trap cleanup EXIT

STEPS=150 # about 10 s of training on one core per rank
EVERY=20
BASE="train.max_steps=$STEPS ckpt.every=$EVERY train.eval_every=0"
JOB_TIMEOUT_S=120
mkdir -p "$TMP/shared" "$TMP/out"
ln -s "$SHARED/data" "$TMP/shared/data"
export DFAR DFAR_HOME=$PWD SHARED_DIR=$TMP/shared MODEL=tests/fixtures/models/tiny-spm DEVICE=cpu \
  CONFIG=configs/tiny-lora-lr.yaml
# Overrides of the scripts' #SBATCH lines for a 2-CPU node without GPUs.
SBATCH=(sbatch --parsable --ntasks-per-node=2 --gpus-per-node=0 --cpus-per-task=1 --time=10)

# ---- helpers -------------------------------------------------------------------------
# submit RUN_NAME EXTRA SCRIPT [SBATCH-OPTIONS...]: prints the job id.
submit() {
  local run=$1 extra=$2 script=$3
  shift 3
  RUN_NAME=$run EXTRA=$extra "${SBATCH[@]}" --output="$TMP/out/$run-%j.out" "$@" "$script"
}

# field JOB NAME: NAME=value from `scontrol show job` (no accounting: no sacct).
field() {
  scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | grep -m 1 "^$2=" | cut -d= -f2-
}

# wait_done JOB: waits (JOB_TIMEOUT_S at most) for a final state and prints it.
wait_done() {
  local state="" t
  for ((t = 0; t < JOB_TIMEOUT_S * 4; t++)); do
    state=$(field "$1" JobState)
    case "$state" in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED)
        echo "$state"
        return 0
        ;;
    esac
    sleep 0.25
  done
  echo "still-${state:-unknown}-after-${JOB_TIMEOUT_S}s"
}

# wait_for SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
  local limit=$1 t
  shift
  for ((t = 0; t < limit * 10; t++)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

# shellcheck disable=SC2317 # run through wait_for
steps_done() { [ "$({ wc -l <"$1/metrics.jsonl"; } 2>/dev/null || echo 0)" -ge "$2" ]; }

# expect_completed NAME JOB: the job ended COMPLETED with exit code 0:0.
expect_completed() {
  local state
  state=$(wait_done "$2")
  if [ "$state" != COMPLETED ] || [ "$(field "$2" ExitCode)" != 0:0 ]; then
    fail "$1: job $2 is $state, exit $(field "$2" ExitCode)"$'\n'"$(tail -n 25 "$TMP"/out/*-"$2".out 2>/dev/null)"
    return 1
  fi
}

# check_run NAME RUN_DIR: rank logs, a run to STEPS, metrics with each step
# 1..STEPS exactly once.
check_run() {
  local dir=$2
  if [ ! -s "$dir/logs/rank-00000.log" ] || [ ! -s "$dir/logs/rank-00001.log" ]; then
    fail "$1: a rank log is missing in $dir/logs"
  fi
  grep -q "done: $STEPS steps" "$dir/logs/rank-00000.log" 2>/dev/null || fail "$1: rank-0 log has no 'done: $STEPS steps'"
  python3 - "$dir/metrics.jsonl" "$STEPS" <<'PY' || fail "$1: metrics.jsonl"
import json, sys
steps = [json.loads(l)["step"] for l in open(sys.argv[1])]
want = list(range(1, int(sys.argv[2]) + 1))
if steps != want:
    dup = sorted({s for s in steps if steps.count(s) > 1})
    gap = sorted(set(want) - set(steps))
    print(f"{len(steps)} lines; repeated steps {dup[:10]}, missing {gap[:10]}")
    sys.exit(1)
PY
}

# same_params NAME RUN_DIR: the newest checkpoint of RUN_DIR holds the same
# tensors as the reference run's, bit for bit: the exported HF weights
# (LoRA merged) are byte-identical, and every tensor of the checkpoint
# (adapters, AdamW moments) has the same shape, dtype and chunk checksums.
same_params() {
  local name=$1 mine ref
  mine=$("$DFAR" ckpt latest "$2") || { fail "$name: no checkpoint in $2"; return; }
  ref=$("$DFAR" ckpt latest "$REF_DIR")
  [ "$(basename "$mine")" = "step-$(printf %08d "$STEPS")" ] || fail "$name: newest checkpoint is $mine"
  expect_ok "$name-export" "$DFAR" ckpt export-hf "$mine" "$TMP/hf-$name"
  [ -d "$TMP/hf-ref" ] || expect_ok ref-export "$DFAR" ckpt export-hf "$ref" "$TMP/hf-ref"
  cmp -s "$TMP/hf-ref/model.safetensors" "$TMP/hf-$name/model.safetensors" ||
    fail "$name: exported model.safetensors differs from the uninterrupted run's"
  python3 - "$ref/index.json" "$mine/index.json" <<'PY' || fail "$name: checkpoint tensors differ from the uninterrupted run's"
import json, sys
def tensors(path):
    index = json.load(open(path))
    return index["step"], {name: (t["shape"], t["dtype"], [(c["begin"], c["end"], c["crc32c"]) for c in t["chunks"]])
                           for name, t in index["tensors"].items()}
(sa, a), (sb, b) = tensors(sys.argv[1]), tensors(sys.argv[2])
bad = sorted(n for n in a.keys() | b.keys() if a.get(n) != b.get(n))
print(f"step {sa} vs {sb}: {len(a)} tensors, {len(bad)} differ {bad[:5]}")
sys.exit(0 if sa == sb and not bad else 1)
PY
}

# our_procs [NAME...]: pids of processes so named (default: dfar ranks,
# slurmstepd, srun) that belong to this cluster (SLURM_CONF in their environment).
our_procs() {
  local pid name
  [ $# -gt 0 ] || set -- dfar slurmstepd srun
  for name in "$@"; do
    for pid in $(pgrep -x "$name" || true); do
      { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_CONF" && echo "$pid"
    done
  done
  return 0
}

# shellcheck disable=SC2317 # run through wait_for
requeued_or_done() {
  [ "$(field "$1" Restarts)" = 1 ] && return 0
  case "$(field "$1" JobState)" in COMPLETED | FAILED | CANCELLED) return 0 ;; esac
  return 1
}

# section LETTER: a progress line with the time since the cluster started.
section() { echo "-- $1 ($((SECONDS - t0)) s)"; }

# shellcheck disable=SC2317 # run through wait_for
no_procs() { [ -z "$(our_procs)" ]; }

# ---- the cluster -------------------------------------------------------------------------
t0=$SECONDS
started=1
if ! out=$("$HERE/cluster.sh" start 2>&1); then
  fail "cluster start:"$'\n'"$out"
  finish
fi
echo "$out" | tail -n 2
daemon_pids=$(cat "$DFAR_SLURM_DIR"/run/*.pid)
expect_ok start-again "$HERE/cluster.sh" start
contains start-again "already running"
expect_ok status "$HERE/cluster.sh" status
contains status "idle"
expect_ok mpi-list srun --mpi=list
contains mpi-list pmix

# ---- a. train-1node: the uninterrupted reference ------------------------------------
section a
REF_DIR=$TMP/shared/runs/ref
job=$(submit ref "$BASE" cluster/slurm/train-1node.sbatch) || fail "sbatch train-1node"
if expect_completed train-1node "$job"; then
  check_run train-1node "$REF_DIR"
  out=$(cat "$TMP/out/ref-$job.out")
  contains train-1node "attempt 1 in $REF_DIR: fresh start"
  contains train-1node "rank=1/2 local=1/2 device=cpu threads=1 launcher=slurm"
fi

# ---- b. preemption: SIGTERM to the batch shell -> checkpoint -> requeue -> resume --
section b
dir=$TMP/shared/runs/preempt
job=$(submit preempt "$BASE" cluster/slurm/train-1node.sbatch) || fail "sbatch preempt"
if wait_for 60 steps_done "$dir" 30; then
  scancel --batch --signal=TERM "$job" || fail "scancel --batch --signal=TERM $job"
  if expect_completed preempt "$job"; then
    [ "$(field "$job" Restarts)" = 1 ] || fail "preempt: Restarts=$(field "$job" Restarts), want 1 (requeued once)"
    out=$(cat "$TMP/out/preempt-$job.out")
    contains preempt "got SIGTERM, sending SIGUSR1"
    contains preempt "stop signal received: checkpointed at step"
    contains preempt "requeueing job $job (restart 1)"
    contains preempt "attempt 2 in $dir: --resume"
    contains preempt "resumed from $dir/checkpoints/step-"
    stopped=$(grep -o 'checkpointed at step [0-9]*' "$TMP/out/preempt-$job.out" | grep -o '[0-9]*$')
    if [ -z "$stopped" ] || [ "$stopped" -ge "$STEPS" ]; then fail "preempt: stopped at step '${stopped:-?}'"; fi
    check_run preempt "$dir"
    same_params preempt "$dir"
  fi
else
  fail "preempt: fewer than 30 steps after 60 s"$'\n'"$(tail -n 20 "$TMP"/out/preempt-*.out)"
fi

# ---- c. hard kill: one rank SIGKILLed (OOM killer, node crash) after a checkpoint --
# (Not `scancel --signal=KILL`: SLURM 22.05 turns it into a plain cancel, which
# sends the batch shell SIGTERM, and the script then checkpoints and requeues.)
section c
dir=$TMP/shared/runs/kill
ck=$dir/checkpoints
job=$(submit kill "$BASE" cluster/slurm/train-1node.sbatch) || fail "sbatch kill"
if wait_for 60 steps_done "$dir" $((EVERY + EVERY / 2)) && [ -f "$ck/latest" ]; then
  victim=""
  for pid in $(our_procs dfar); do
    { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qx 'SLURM_PROCID=1' && victim=$pid
  done
  [ -n "$victim" ] || fail "kill: no rank 1 process of job $job found"
  kill -KILL "$victim"
  state=$(wait_done "$job")
  [ "$state" = FAILED ] || fail "kill: job $job is $state after rank 1 got SIGKILL, want FAILED"
  [ "$(field "$job" Restarts)" = 0 ] || fail "kill: the failed job was requeued"
  out=$(cat "$TMP/out/kill-$job.out")
  contains kill "not requeueing"
  wait_for 10 no_procs || fail "kill: processes outlived the failed job: $(our_procs)"
  last=$(tr -d '\n' <"$ck/latest")
  echo "kill: rank 1 SIGKILLed at step ~$(wc -l <"$dir/metrics.jsonl"), latest = $last"
  # What a crash leaves: a save in progress (step-N.tmp) and a step dir
  # without index.json, the completion marker (docs/checkpoint-format.md).
  next=$(printf 'step-%08d' $((10#${last#step-} + EVERY)))
  mkdir -p "$ck/$next.tmp" "$ck/step-99999999"
  head -c 4096 /dev/urandom >"$ck/$next.tmp/shard-00000-of-00002.h5"
  head -c 4096 /dev/urandom >"$ck/step-99999999/shard-00000-of-00002.h5"
  [ "$("$DFAR" ckpt latest "$dir")" = "$ck/$last" ] || fail "kill: 'dfar ckpt latest' does not pick $last"
  job=$(submit kill "$BASE" cluster/slurm/train-1node.sbatch) || fail "sbatch kill (resubmitted)"
  if expect_completed kill-resubmitted "$job"; then
    out=$(cat "$TMP/out/kill-$job.out")
    contains kill-resubmitted "attempt 1 in $dir: --resume"
    contains kill-resubmitted "resumed from $ck/$last at step $((10#${last#step-}))"
    same_params kill "$dir"
    # The steps logged between the checkpoint and the kill are dropped on
    # resume (they are trained again): every step appears exactly once.
    check_run kill "$dir"
  fi
else
  fail "kill: no checkpoint and $((EVERY + EVERY / 2)) steps after 60 s"$'\n'"$(tail -n 20 "$TMP"/out/kill-*.out)"
  scancel "$job" 2>/dev/null
fi

# ---- d. eval.sbatch on the reference run's newest checkpoint ---------------------------
section d
job=$(submit ref "eval.limit=8 eval.max_new_tokens=16" cluster/slurm/eval.sbatch) || fail "sbatch eval"
if expect_completed eval "$job"; then
  out=$(cat "$TMP/out/ref-$job.out")
  contains eval "evaluating $REF_DIR/checkpoints/step-$(printf %08d "$STEPS")"
  python3 - "$REF_DIR/eval" <<'PY' || fail "eval: report"$'\n'"$out"
import json, os, sys
d = sys.argv[1]
report = json.load(open(os.path.join(d, "eval_report.json")))
rows = [json.loads(l) for l in open(os.path.join(d, "predictions.jsonl"))]
print(f"eval: {len(rows)} predictions, report keys {sorted(report)[:6]}")
sys.exit(0 if len(rows) == 8 and os.path.getsize(os.path.join(d, "eval_report.md")) > 0 else 1)
PY
  contains eval "world 2"
fi

# ---- e. train-multinode.sbatch on one node -------------------------------------------
section e
job=$(submit multinode "train.max_steps=20 ckpt.every=10 train.eval_every=0" cluster/slurm/train-multinode.sbatch \
  --nodes=1) || fail "sbatch multinode"
if expect_completed multinode "$job"; then
  out=$(cat "$TMP/out/multinode-$job.out")
  contains multinode "on 1 node(s) in $TMP/shared/runs/multinode: fresh start"
  contains multinode "rank=1/2 local=1/2 device=cpu threads=1 launcher=slurm"
  contains multinode "done: 20 steps"
fi

# ---- f. mpirun inside an allocation (launch/train.sh) ----------------------------------
section f
job=$(sbatch --parsable --ntasks=2 --cpus-per-task=1 --time=5 --output="$TMP/out/mpirun-%j.out" \
  --wrap "NP=2 THREADS=1 CONFIG=configs/tiny-lora-lr.yaml DFAR=$DFAR launch/train.sh \
run.dir=$TMP/shared/runs/mpirun train.max_steps=10 train.eval_every=0 \
data.train=$TMP/shared/data/dfar/DFAR_trainset.csv data.test=$TMP/shared/data/dfar/DFAR_testset.csv") ||
  fail "sbatch mpirun"
if expect_completed mpirun "$job"; then
  out=$(cat "$TMP/out/mpirun-$job.out")
  contains mpirun "rank=1/2 local=1/2 device=cpu threads=1 launcher=openmpi"
  contains mpirun "done: 10 steps"
fi

# ---- g. a plain `scancel` of a running training job: what happens ----------------
# SLURM's cancel sends the batch shell SIGTERM, as --signal=B:TERM@300 does
# (but with the job already COMPLETING). The ranks must checkpoint cleanly; the
# outcome (requeued or ended) is printed, not judged: see cluster/README.md.
section g
dir=$TMP/shared/runs/cancel
job=$(submit cancel "$BASE" cluster/slurm/train-1node.sbatch) || fail "sbatch cancel"
if wait_for 60 steps_done "$dir" 25; then
  scancel "$job"
  wait_for 20 requeued_or_done "$job" || fail "cancel: job $job neither requeued nor ended"
  out=$(cat "$TMP/out/cancel-$job.out")
  contains cancel "stop signal received: checkpointed at step"
  # dfar_slurm_finish requeues only a job that is still RUNNING: a cancelled
  # one stays cancelled.
  contains cancel "not requeueing"
  [ "$(field "$job" Restarts)" = 0 ] || fail "cancel: a plain scancel requeued job $job"
  state=$(wait_done "$job")
  [ "$state" = CANCELLED ] || fail "cancel: job $job is $state after scancel, want CANCELLED"
else
  fail "cancel: fewer than 25 steps after 60 s"
  scancel "$job" 2>/dev/null
fi

# ---- stop: nothing of the cluster is left -------------------------------------------
expect_ok stop "$HERE/cluster.sh" stop
started=0
for pid in $daemon_pids; do
  kill -0 "$pid" 2>/dev/null && fail "stop: daemon pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) still runs"
done
no_procs || fail "stop: processes of the cluster remain: $(our_procs)"
echo "wall time $((SECONDS - t0)) s"
finish
