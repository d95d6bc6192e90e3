#!/usr/bin/env bash
# `dfar eval` end to end: exactly-once sharding under mpirun (1, 2 and 3 ranks
# give the same predictions, in order), reports, compare, human MAR, ETHOS.
source "$(dirname "$0")/lib.sh"

GGUF=${DFAR_CACHE:-.cache}/models/smollm2-135m-instruct.gguf
MPIRUN=(mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 --mca btl self,vader)
export OMP_NUM_THREADS=1

# ---- human MAR (no model needed) ---------------------------------------------
header='statement,gold_label,predicted_label,generated_reason,aligned'
printf '%s\na,1,1,r,1\nb,0,0,r,0\n"c, quoted",0,1,"multi\nline",yes\nd,1,-1,,No\n' "$header" > "$TMP/ann.csv"
expect_ok mar "$DFAR" eval mar --annotations "$TMP/ann.csv"
contains mar "rows: 4  aligned: 2  misaligned: 2"
contains mar "human MAR: 50.0%"

printf '%s\na,1,1,r,1\nb,0,0,r,\n' "$header" > "$TMP/unfilled.csv"
expect_error mar-unfilled "$DFAR" eval mar --annotations "$TMP/unfilled.csv"
contains mar-unfilled "unfilled.csv:3"
contains mar-unfilled "'aligned' is empty"

printf '%s\na,1,1,r,1\n,,,,\n' "$header" > "$TMP/emptyrow.csv"
expect_error mar-empty-row "$DFAR" eval mar --annotations "$TMP/emptyrow.csv"
contains mar-empty-row "emptyrow.csv:3: empty row"

printf '%s\na,1,1,r,perhaps\n' "$header" > "$TMP/bad.csv"
expect_error mar-bad-value "$DFAR" eval mar --annotations "$TMP/bad.csv"
contains mar-bad-value "bad.csv:2"

expect_error both-models "$DFAR" eval --model a.gguf --checkpoint runs/x
contains both-models "not both"
expect_error missing-model "$DFAR" eval --model "$TMP/nope.gguf" --out "$TMP/none"
contains missing-model "nope.gguf"
printf '{"format":"something-else"}' > "$TMP/foreign.json"
expect_error compare-foreign "$DFAR" eval compare "$TMP/foreign.json"
contains compare-foreign "not a dfar-eval-report"

if [ ! -f "$GGUF" ]; then
  echo "SKIP: $GGUF is absent (make deps fetches it); model-driven eval checks skipped"
  finish
fi

# ---- 7 examples on 1, 2 and 3 ranks ------------------------------------------
# Reasons are judged by the real sentence encoder, against the hand-written
# sample bank (the default bank, the 4,500 DFAR train reasons, takes a minute
# to embed the first time).
SMALL=(eval.limit=7 eval.max_new_tokens=4 eval.batch_size=1 eval.mar_bank=data/samples/dfar_sample.csv)
expect_ok np1 "$DFAR" eval --model "$GGUF" --out "$TMP/np1" "${SMALL[@]}"
contains np1 "7 examples"
contains np1 "world 1 (single)"
contains np1 "accuracy "
for f in eval_report.json eval_report.md predictions.jsonl annotations.csv; do
  [ -f "$TMP/np1/$f" ] || fail "np1: $f missing"
done
for np in 2 3; do
  expect_ok "np$np" "${MPIRUN[@]}" -np "$np" "$DFAR" eval --model "$GGUF" --out "$TMP/np$np" "${SMALL[@]}"
  contains "np$np" "7 examples"
  contains "np$np" "world $np (mpi)"
  # One prompt per batch: every rank computes exactly what one rank computes.
  cmp -s "$TMP/np1/predictions.jsonl" "$TMP/np$np/predictions.jsonl" ||
    fail "np$np: predictions.jsonl differs from the 1-rank run"$'\n'"$(diff "$TMP/np1/predictions.jsonl" "$TMP/np$np/predictions.jsonl")"
done
out=$(cat "$TMP/np3/eval_report.json")
contains np3-report '"world_size": 3'
if [ -f .cache/models/all-minilm-l6-v2/model.safetensors ]; then
  contains np3-report '"judged": true'
  contains np3-report '"auto_mar": {'
  contains np3-report '"similarity": {'
fi

# Batched decoding on 2 ranks: still every example exactly once, in file order.
expect_ok np2-batched "${MPIRUN[@]}" -np 2 "$DFAR" eval --model "$GGUF" --out "$TMP/np2b" \
  eval.limit=7 eval.max_new_tokens=4 eval.batch_size=4
order=$(grep -o '"index":[0-9]*' "$TMP/np2b/predictions.jsonl" | cut -d: -f2 | tr '\n' ' ')
[ "$order" = "0 1 2 3 4 5 6 " ] || fail "np2-batched: predictions out of order or not exactly once: '$order'"
out=$(cat "$TMP/np2b/eval_report.json")
contains np2-report '"examples": 4'
contains np2-report '"examples": 3'

# The annotation file is left for a person: unfilled, it is rejected.
expect_error mar-unannotated "$DFAR" eval mar --annotations "$TMP/np1/annotations.csv"
contains mar-unannotated "annotations.csv:2"

# ---- likelihood mode, compare ------------------------------------------------
expect_ok likelihood "${MPIRUN[@]}" -np 2 "$DFAR" eval --model "$GGUF" --out "$TMP/lik" --objective l \
  eval.mode=likelihood eval.limit=7
contains likelihood "7 examples"
contains likelihood "unparseable 0.0%"

expect_ok compare "$DFAR" eval compare "$TMP/np1" "$TMP/lik/eval_report.json"
contains compare "| model"
contains compare "| accuracy [95%]"
contains compare "pre-trained"
contains compare "auto MAR"
lacks_text() { case "$out" in *"$2"*) fail "$1: output should not contain '$2'" ;; esac; }
lacks_text compare "MAR proxy"
# Reports of different example sets are not paired.
expect_ok lik5 "$DFAR" eval --model "$GGUF" --out "$TMP/lik5" --objective l eval.mode=likelihood eval.limit=5
expect_error compare-mismatch "$DFAR" eval compare "$TMP/np1" "$TMP/lik5"
contains compare-mismatch "cannot be paired: they evaluated different example sets"

# ---- ETHOS: threshold labels, no reasons -------------------------------------
expect_ok ethos "${MPIRUN[@]}" -np 2 "$DFAR" eval --config configs/eval-ethos.yaml --model "$GGUF" \
  --out "$TMP/ethos" eval.limit=6 eval.max_new_tokens=8
contains ethos "6 examples"
contains ethos "accuracy "
contains ethos "/6)"
out=$(cat "$TMP/ethos/eval_report.json")
contains ethos-report '"reasons_all": null'
contains ethos-report 'Ethos_Dataset_Binary.csv"'

finish
