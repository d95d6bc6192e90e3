#!/usr/bin/env bash
# `make bench`: runs the CPU benchmark suite, writes benchmarks/results/*.json
# and the plots, and regenerates docs/benchmarks.md (benchmarks/report.py).
# Usage: benchmarks/run.sh [BUILD_DIR]   (env: BENCH_WORK=/tmp/dfar-bench, QUICK=1 for a smoke run,
#        BENCH_PY=python of the baselines: default the bench environment of scripts/bench_deps.sh)
# BUILD_DIR is the torch 2.11 build (`make bench` passes it): the Python
# baselines run on the same torch 2.11 wheel, so a ratio compares frameworks,
# not libtorch versions.
# Every benchmark runs even if an earlier one fails; the exit status is
# non-zero if any failed (a failed correctness column exits non-zero).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
BUILD=${1:-build-alt}
# dfar-only figures whose reference was measured on the default build (the
# evaluator's throughput) run on it: DEFAULT_BUILD.
DEFAULT_BUILD=${DEFAULT_BUILD:-build}
BIN=$BUILD/bin
OUT=benchmarks/results
WORK=${BENCH_WORK:-/tmp/dfar-bench}
PY=${BENCH_PY:-${DFAR_CACHE:-.cache}/bench-py/bin/python}
REPORT_PY=/usr/bin/python3  # Debian's, which has python3-matplotlib for the plots.
[[ -x $PY ]] || { echo "bench: no baseline python at $PY (run scripts/bench_deps.sh)" >&2; exit 2; }
Q=()
[[ -n ${QUICK:-} ]] && Q=(--quick)
# shellcheck disable=SC2054  # "self,vader" is one mpirun argument.
MPI=(mpirun --allow-run-as-root --oversubscribe --mca btl self,vader -x OMP_NUM_THREADS=1 -x DFAR_GIT_COMMIT)
export DFAR_GIT_COMMIT
DFAR_GIT_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
mkdir -p "$OUT" "$WORK"
failed=()
start=$SECONDS

step() {  # step NAME CMD...: runs one benchmark, logs it, records failure.
  local name=$1
  shift
  echo "== $name: $*"
  local t0=$SECONDS
  if "$@" 2>&1 | tee "$WORK/$name.log" | grep -v '^\[' ; then :; fi
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
  [[ $rc == 0 ]] || failed+=("$name")
}

step allreduce "${MPI[@]}" -np 2 "$BIN/bench_allreduce" "${Q[@]}" --json "$OUT/allreduce.json"
step gradsync "${MPI[@]}" -np 2 "$BIN/bench_gradsync" --threads 1 "${Q[@]}" --json "$OUT/gradsync.json"
# One process per case: each runs under the OpenMP wait policy dfar picks for
# its dtype (src/runtime/thread_policy.cpp); merged into step.json.
step_cases=(tiny-full-fp32 smollm2-full-fp32 smollm2-full-bf16 smollm2-lora-fp32 smollm2-lora-bf16
  smollm2-lora-dfar-fp32 smollm2-lora-dfar-bf16)
step_parts=()
for c in "${step_cases[@]}"; do
  export_args=()
  [[ $c == tiny-full-fp32 ]] && export_args=(--export "$WORK/models")
  [[ $c == *-dfar-* ]] && export_args=(--examples "$WORK/dfar-examples.json")
  step "step-$c" env OMP_NUM_THREADS=2 "$BIN/bench_step" --case "$c" --threads 2 "${export_args[@]}" "${Q[@]}" \
    --json "$WORK/step-$c.json"
  step_parts+=("$WORK/step-$c.json")
done
step step-merge "$REPORT_PY" benchmarks/merge_json.py "$OUT/step.json" "${step_parts[@]}"
step step_eager env OMP_NUM_THREADS=2 "$PY" benchmarks/py/step_eager.py --models "$WORK/models" --threads 2 \
  --reference "$OUT/step.json" "${Q[@]}" --json "$OUT/step_eager.json"
step step_hf_peft env OMP_NUM_THREADS=2 "$PY" benchmarks/py/step_hf_peft.py --models "$WORK/models" --threads 2 \
  --examples "$WORK/dfar-examples.json" \
  --reference "$OUT/step.json" "${Q[@]}" --json "$OUT/step_hf_peft.json"
# Scaling, 1 thread per rank: weak = the same per-rank batch on 1 and 2
# ranks; strong = the same global batch (4) split over 1 and 2 ranks.
for c in smollm2-lora-bf16 smollm2-full-bf16; do
  step "scaling-$c-np1-b4" "${MPI[@]}" -np 1 "$BIN/bench_step" --case $c --threads 1 --batch 4 --seq 128 \
    "${Q[@]}" --json "$OUT/scaling-$c-np1-b4.json"
  step "scaling-$c-np1-b2" "${MPI[@]}" -np 1 "$BIN/bench_step" --case $c --threads 1 --batch 2 --seq 128 \
    "${Q[@]}" --json "$OUT/scaling-$c-np1-b2.json"
  step "scaling-$c-np2-b2" "${MPI[@]}" -np 2 "$BIN/bench_step" --case $c --threads 1 --batch 2 --seq 128 \
    "${Q[@]}" --json "$OUT/scaling-$c-np2-b2.json"
done
step ckpt "${MPI[@]}" -np 2 "$BIN/bench_ckpt" --dir "$WORK/ckpt" "${Q[@]}" --json "$OUT/ckpt.json"
# Memory per rank by ZeRO stage at 1, 2 and 4 ranks (1 thread each).
for np in 1 2 4; do
  step "memory-np$np" "${MPI[@]}" -np $np "$BIN/bench_memory" "${Q[@]}" --json "$OUT/memory-np$np.json"
done
step attention env OMP_NUM_THREADS=2 "$BIN/bench_attention" --threads 2 "${Q[@]}" --json "$OUT/attention.json"
step generate env OMP_NUM_THREADS=2 "$BIN/bench_generate" --threads 2 "${Q[@]}" --json "$OUT/generate.json"
step generate_hf env OMP_NUM_THREADS=2 "$PY" benchmarks/py/generate_hf.py --models "$WORK/models" --threads 2 \
  --reference "$OUT/generate.json" "${Q[@]}" --json "$OUT/generate_hf.json"

# The evaluator's generation throughput: the demo's pre-trained eval (2 ranks),
# on the default build, where its reference figure was measured.
step eval_throughput "$REPORT_PY" benchmarks/py/eval_throughput.py --dfar "$DEFAULT_BUILD/bin/dfar" "${Q[@]}" \
  --json "$OUT/eval_throughput.json"
# The OpenMP wait policy dfar picks, against the other one, per dtype: the
# LoRA step with OMP_WAIT_POLICY=PASSIVE and with libgomp's default.
for c in smollm2-lora-fp32 smollm2-lora-bf16; do
  step "threads-$c-passive" env OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE "$BIN/bench_step" --case "$c" --threads 2 \
    "${Q[@]}" --json "$WORK/threads-$c-passive.json"
  step "threads-$c-default" env OMP_NUM_THREADS=2 DFAR_THREAD_POLICY=off "$BIN/bench_step" --case "$c" --threads 2 \
    "${Q[@]}" --json "$WORK/threads-$c-default.json"
done
step threads-merge "$REPORT_PY" benchmarks/merge_json.py "$OUT/threads.json" "$WORK"/threads-*-passive.json \
  "$WORK"/threads-*-default.json

echo "== suite: $((SECONDS - start)) s"
"$REPORT_PY" benchmarks/report.py --results "$OUT" --out docs/benchmarks.md --suite-seconds $((SECONDS - start)) \
  --failed "${failed[*]:-}" || failed+=(report)
if ((${#failed[@]})); then
  echo "bench: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "bench: all benchmarks passed their correctness checks; see docs/benchmarks.md"
