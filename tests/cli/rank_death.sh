#!/usr/bin/env bash
# No collective waits forever: 2 ranks train the tiny config under mpirun,
# then one rank is (a) SIGKILLed or (b) SIGSTOPped. Every rank must be gone,
# with a non-zero job exit, within the collective deadline + 30 s, and the
# surviving rank's log or stderr must name rank 1 as dead or stopped. In (b)
# nothing but the watchdog can end the job (mpirun sees no death), so it also
# checks the flight recorder and that the job ended after the deadline.
source "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1
DEADLINE=5
MPI=(mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 --mca btl self,vader -np 2)
ARGS=(train --config configs/tiny-lora-lr.yaml train.max_steps=100000 "dist.collective_timeout_s=$DEADLINE"
  ckpt.every=0 train.eval_every=0)

# rank_pid JOB_PID RANK: the pid of that rank among mpirun's children.
rank_pid() {
  local p
  for p in $(pgrep -P "$1"); do
    if tr '\0' '\n' < "/proc/$p/environ" 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
      echo "$p"
      return
    fi
  done
}

# start_job DIR: launches the job; sets job, pid0, pid1 once training runs.
start_job() {
  local dir=$1
  "${MPI[@]}" "$DFAR" "${ARGS[@]}" run.dir="$dir" > "$dir.out" 2>&1 &
  job=$!
  for _ in $(seq 1 300); do
    [ -s "$dir/metrics.jsonl" ] && break
    sleep 0.2
  done
  sleep 1
  pid0=$(rank_pid "$job" 0)
  pid1=$(rank_pid "$job" 1)
  [ -s "$dir/metrics.jsonl" ] && [ -n "$pid0" ] && [ -n "$pid1" ] && return 0
  fail "$dir: training did not start (ranks: '$pid0' '$pid1')"$'\n'"$(tail -20 "$dir.out")"
  return 1
}

# wait_gone NAME SECONDS PIDS...: waits for the job and ranks to end; sets rc, took.
wait_gone() {
  local name=$1 limit=$2 t0 p alive
  shift 2
  t0=$(date +%s.%N)
  for _ in $(seq 1 $((limit * 10))); do
    alive=0
    for p in "$job" "$@"; do kill -0 "$p" 2> /dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  if [ $alive -ne 0 ]; then
    fail "$name: processes still alive after ${limit}s"
    kill -KILL "$job" "$@" 2> /dev/null
  fi
  wait "$job"
  rc=$?
  [ "$rc" -ne 0 ] || fail "$name: mpirun exited 0"
}

# names_rank1 NAME DIR PATTERN: rank 0's log or the job's stderr names rank 1.
names_rank1() {
  out=$(cat "$2/logs/rank-00000.log" "$2.out" 2> /dev/null)
  if ! grep -qE "rank 1: ($3)" <<< "$out"; then
    fail "$1: rank 0 did not name rank 1 as $3"$'\n'"--- rank 0 log and stderr (tail):"$'\n'"$(tail -30 <<< "$out")"
  fi
}

# ---- (a) a rank is killed ------------------------------------------------------
if start_job "$TMP/kill"; then
  kill -KILL "$pid1"
  wait_gone kill $((DEADLINE + 30)) "$pid0" "$pid1"
  echo "kill: job ended ${took}s after SIGKILL of rank 1, exit $rc"
  names_rank1 kill "$TMP/kill" "DEAD|MISSING|STALE"
  [ -d "$TMP/kill/progress" ] || fail "kill: no progress/ heartbeat dir (is the watchdog enabled by the trainer?)"
fi

# ---- (b) a rank stalls ---------------------------------------------------------
if start_job "$TMP/stop"; then
  kill -STOP "$pid1"
  wait_gone stop $((DEADLINE + 30)) "$pid0"
  echo "stop: job ended ${took}s after SIGSTOP of rank 1, exit $rc"
  kill -KILL "$pid1" 2> /dev/null  # mpirun normally has; make sure.
  for _ in $(seq 1 50); do kill -0 "$pid1" 2> /dev/null || break; sleep 0.1; done
  kill -0 "$pid1" 2> /dev/null && fail "stop: rank 1 still alive"
  names_rank1 stop "$TMP/stop" "STOPPED|STALE"
  # Whether rank 1 had entered the pending collective depends on where the
  # SIGSTOP caught it (inside a step or inside the all-reduce); the
  # diagnosis must say which.
  grep -qE "rank 1: STOPPED .*(NOT reached it|had reached it)" <<< "$(cat "$TMP/stop/logs/rank-00000.log" "$TMP/stop.out" 2> /dev/null)" ||
    fail "stop: the diagnosis does not say whether rank 1 reached the collective"
  awk -v t="$took" -v d="$DEADLINE" 'BEGIN {exit !(t >= d - 1)}' || fail "stop: the job ended after ${took}s, before the deadline"
  python3 - "$TMP/stop/flight-recorder-rank-00000.json" << 'PY' || fail "stop: no valid flight recorder from rank 0"
import json, sys
fr = json.load(open(sys.argv[1]))
c = fr["collectives"]
assert fr["format"] == "dfar-flight-recorder" and fr["rank"] == 0 and 0 < len(c) <= 64, fr
assert c[-1]["state"] == "pending" and c[-1]["seq"] == fr["pending_seq"], c[-1]
assert all(r["state"] == "completed" for r in c[:-1])
print(f"flight recorder: {len(c)} collectives, pending #{c[-1]['seq']} {c[-1]['kind']} ({c[-1]['site']})")
PY
fi

# ---- (c) SIGTERM while a collective is stalled ---------------------------------
# The one stop-signal handler feeds the watchdog: rank 0, stuck in a
# collective that rank 1 (stopped) never joins, gets SIGTERM. It must print
# the stall diagnosis at once (naming rank 1), and the job must still end
# non-zero (the stop protocol cannot complete, so the deadline ends it).
if start_job "$TMP/term"; then
  kill -STOP "$pid1"
  sleep 2  # Longer than the watchdog's signal_pending_s (1 s).
  kill -TERM "$pid0"
  wait_gone term $((DEADLINE + 30)) "$pid0"
  echo "term: job ended ${took}s after SIGTERM of stalled rank 0, exit $rc"
  kill -KILL "$pid1" 2> /dev/null
  out=$(cat "$TMP/term/logs/rank-00000.log" "$TMP/term.out" 2> /dev/null)
  grep -q "stop signal 15 received" <<< "$out" || fail "term: no stall diagnosis for the stop signal"$'\n'"$(tail -30 <<< "$out")"
  names_rank1 term "$TMP/term" "STOPPED|STALE"
fi

finish
