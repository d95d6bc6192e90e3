#!/usr/bin/env bash
# scripts/experiment.sh end to end on the tiny model, 2 seeds, small sets:
# a stop signal in the middle of a training (which checkpoints and exits
# 130), a rerun that skips the finished phases, resumes the training from
# its checkpoint (every step logged once) and completes; a rerun with other
# sizes refused; then tools/experiment_report.py's page, its loss PNGs and
# the README block, and its error for a missing report.
source "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run="$TMP/exp"
# 400 rows at global batch 8: 50 steps per training, a checkpoint every 10.
export DFAR DFAR_MODEL=tests/fixtures/models/tiny-spm EXP_SEEDS="1 2" EXP_TRAIN_ROWS=400 EXP_TEST_ROWS=12 \
  EXP_ETHOS_ROWS=12 EXP_NEW_TOKENS=6 EXP_DTYPE=fp32 EXP_CKPT_EVERY=10 EXP_DIR="$run" EXP_DOC="$TMP/doc/results.md" \
  EXP_EVAL_ARGS="eval.encoder="
mkdir -p "$TMP/doc"

# ---- interrupted once, in the first training -----------------------------------
bash scripts/experiment.sh > "$TMP/first.log" 2>&1 &
pid=$!
log="$run/state/train-l-seed1.log"
for _ in $(seq 600); do  # Up to 60 s for the first checkpoint of the first training.
  grep -q 'checkpoint step 10 ' "$log" 2>/dev/null && break
  sleep 0.1
done
kill -USR1 "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 130 ] || fail "a stop signal should end the experiment with 130, got $rc"$'\n'"$(tail -20 "$TMP/first.log")"
[ -f "$run/state/train-l-seed1.done" ] && fail "the interrupted training was marked done"
[ -f "$run/state/eval-pretrained-dfar.done" ] || fail "the phases before the interruption were not marked done"
stopped_at=$("$DFAR" ckpt latest "$run/train-l-seed1" 2>/dev/null | sed 's/.*step-0*//')
if [ -z "$stopped_at" ] || [ "$stopped_at" -ge 50 ]; then fail "expected a checkpoint before step 50, got '$stopped_at'"; fi
before=$(stat -c %Y "$run/state/eval-pretrained-dfar.done")

# ---- a rerun finishes the run, redoing nothing that was finished -------------
expect_ok rerun bash scripts/experiment.sh
contains rerun "eval-pretrained-dfar: done earlier, skipped"
contains rerun "resuming from"
contains rerun "== all 19 phases done"
[ "$(stat -c %Y "$run/state/eval-pretrained-dfar.done")" = "$before" ] || fail "a finished phase ran again"
python3 - "$run/train-l-seed1/metrics.jsonl" <<'PY' || fail "the resumed training did not log steps 1..50 exactly once"
import json, sys
steps = [json.loads(line)["step"] for line in open(sys.argv[1])]
sys.exit(0 if steps == list(range(1, 51)) else print(steps) or 1)
PY
for f in "$TMP/doc/results.md" "$TMP/doc/results/results-loss-l.png" "$TMP/doc/results/results-loss-lr.png"; do
  [ -s "$f" ] || fail "the report did not write $f"
done
out=$(cat "$TMP/doc/results.md")
for text in "## Accuracy" "| L+R | " "Llama-2-7B (paper)" "## Paired tests: L+R against L, per seed" \
  "| DFAR test | 2 |" "## Reasons (DFAR test, all rows)" "ROUGE-L F1" "chrF" "## Wall time of each phase" \
  "| train-lr | 2 |" "cpu flags:" "libtorch" "**What this run shows.**" "held-out (hand-written)"; do
  contains report "$text"
done

# ---- other sizes on the same dir are refused ------------------------------------
expect_error other-sizes env EXP_SEEDS="1 2 3" bash scripts/experiment.sh
contains other-sizes "was started with other sizes"

# ---- the report alone: README block, and a missing report -----------------------
printf 'intro\n<!-- results:begin -->\nold\n<!-- results:end -->\nrest\n' > "$TMP/README.md"
expect_ok readme python3 tools/experiment_report.py --run "$run" --out "$TMP/doc/results.md" --readme "$TMP/README.md"
out=$(cat "$TMP/README.md")
contains readme "| tiny-spm + LoRA | 400 x 1 | 2 |"
contains readme "(doc/results.md)"
contains readme "rest"
rm "$run/eval-lr-seed2-ethos/eval_report.json"
expect_error missing python3 tools/experiment_report.py --run "$run" --out "$TMP/doc/results.md"
contains missing "eval-lr-seed2-ethos/eval_report.json"
finish
