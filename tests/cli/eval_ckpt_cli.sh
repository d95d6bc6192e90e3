#!/usr/bin/env bash
# A checkpoint written by 2 ranks, evaluated on 1 and on 3 ranks, gives the
# same predictions and the same report (timing apart). Uses the tiny model.
source "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1
mpi() { mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 -np "$1" "${@:2}"; }

expect_ok train mpi 2 "$DFAR" train --config configs/tiny-lora-lr.yaml run.dir="$TMP/run" train.max_steps=4 \
  ckpt.every=0 train.eval_every=0
ckpt="$TMP/run/checkpoints/$(tr -d '\n' < "$TMP/run/checkpoints/latest")"
for np in 1 3; do
  expect_ok "eval-np$np" mpi "$np" "$DFAR" eval --checkpoint "$ckpt" --out "$TMP/eval$np" eval.limit=7 eval.mar_bank=data/samples/dfar_sample.csv \
    eval.batch_size=1 eval.max_new_tokens=4
  [ -s "$TMP/eval$np/eval_report.json" ] && [ -s "$TMP/eval$np/eval_report.md" ] || fail "np=$np wrote no reports"
done
cmp -s "$TMP/eval1/predictions.jsonl" "$TMP/eval3/predictions.jsonl" || fail "predictions differ between 1 and 3 ranks"
python3 - "$TMP/eval1/eval_report.json" "$TMP/eval3/eval_report.json" <<'PY' || fail "reports differ beyond timing"
import json, sys
def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items()
                if not any(t in k for t in ("time", "second", "per_s", "world", "wall", "rank", "out", "backend"))}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o
a, b = (strip(json.load(open(p))) for p in sys.argv[1:3])
if a != b:
    print(json.dumps(a, indent=1)); print(json.dumps(b, indent=1))
sys.exit(0 if a == b else 1)
PY
n=$(wc -l < "$TMP/eval3/predictions.jsonl")
[ "$n" -eq 7 ] || fail "expected 7 predictions, got $n"
expect_ok compare "$DFAR" eval compare "$TMP/eval1/eval_report.json" "$TMP/eval3/eval_report.json"
contains compare "accuracy"
finish
