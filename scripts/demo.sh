#!/usr/bin/env bash
# `make demo`: the paper's experiment in miniature, on this machine.
#   SmolLM2-135M-Instruct (GGUF, the embedded default) + LoRA, DFAR, 2 MPI ranks
#   1. evaluate the pre-trained model      4. fine-tune with L+R
#   2. fine-tune with L (HDF5 checkpoints) 5. evaluate L+R from its checkpoint
#   3. evaluate L from its checkpoint      6. print the pre-trained / L / L+R table
# Sized to fit `make demo` (build included) in 20 minutes on 2 CPU cores of
# either kind: with AVX512-BF16, `auto` trains in bf16 (~300 tokens/s on the
# reference machine); on an AVX2-only CPU it trains in fp32, measured there at
# 93 tokens/s on the L config, ~3.4x slower, so the sizes below come from that
# slower figure (README, "What make demo runs"). DFAR_DEMO_SCALE=full
# runs the paper's setup instead (all 4,500 rows, 10 epochs, all 500 test rows:
# GPU territory); DFAR_DEMO_TRAIN_ROWS / _STEPS / _TEST_ROWS change one size.
set -euo pipefail
build=${1:-build}
dfar="$build/bin/dfar"
np=${NP:-2}
out=${DFAR_DEMO_DIR:-runs/demo}
model=${DFAR_MODEL:-${DFAR_CACHE:-.cache}/models/smollm2-135m-instruct.gguf}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMPI_MCA_mpi_yield_when_idle=1
mpi=(mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS -x OMPI_MCA_mpi_yield_when_idle -np "$np")

case "${DFAR_DEMO_SCALE:-small}" in
  full) train_rows=0 steps=0 epochs=10 test_rows=0 seq=512 new_l=8 new_lr=160 bank=0 dtype=auto ;;
  small) train_rows=192 steps=24 epochs=1 test_rows=128 seq=160 new_l=8 new_lr=32 bank=1000 dtype=auto ;;
  *) echo "demo: DFAR_DEMO_SCALE must be small or full, not '$DFAR_DEMO_SCALE'" >&2; exit 2 ;;
esac
# Single knobs override the scale: rows (0 = all), steps (0 = epochs), test rows (0 = all 500).
train_rows=${DFAR_DEMO_TRAIN_ROWS:-$train_rows} steps=${DFAR_DEMO_STEPS:-$steps}
test_rows=${DFAR_DEMO_TEST_ROWS:-$test_rows}
[ -s "$model" ] || { echo "demo: $model is missing (run: make deps)" >&2; exit 1; }

cat <<PLAN
================================================================================
dfar demo: a SMALL version of "Beyond Labels" (not the full experiment)
  model      SmolLM2-135M-Instruct (GGUF Q4_1, dequantised) + LoRA r=16
  ranks      $np MPI ranks x $OMP_NUM_THREADS thread(s), CPU, compute dtype $dtype (auto: bf16 only where
             a probe GEMM shows it faster on this CPU; each run prints its choice and why)
  train      $train_rows DFAR train rows spread over the file (0 = all), $steps steps (0 = $epochs epochs) per objective
  sequence   $seq tokens; global batch $((np * 4)) examples
  test       $test_rows DFAR test rows spread over the file (0 = all 500), greedy generation;
             reasons judged by all-MiniLM-L6-v2 (similarity; automatic MAR against $bank train reasons, 0 = all)
  outputs    $out/
Scale up: DFAR_DEMO_SCALE=full make demo
================================================================================
PLAN

start=$(date +%s)
overrides=(data.limit="$train_rows" data.subset=stride train.max_steps="$steps" train.epochs="$epochs" prompt.max_seq_len="$seq"
           model.dtype="$dtype" model.path="$model")
# The automatic MAR's bank: $bank human train reasons spread over the file (0 = all 4,500).
evals=(eval.limit="$test_rows" eval.subset=stride eval.mode=generate prompt.max_seq_len=1024 model.dtype="$dtype"
       eval.mar_bank_limit="$bank")

latest() { echo "$1/checkpoints/$(tr -d '\n' < "$1/checkpoints/latest")"; }

echo; echo "== 1/5 pre-trained model on the test set"
"${mpi[@]}" "$dfar" eval --config configs/demo-lr.yaml --model "$model" --objective lr --out "$out/eval-pretrained" \
  "${evals[@]}" eval.max_new_tokens="$new_lr"

for obj in l lr; do
  new=$new_l; [ "$obj" = lr ] && new=$new_lr
  echo; echo "== fine-tune objective $obj (sharded HDF5 checkpoints)"
  "${mpi[@]}" "$dfar" train --config "configs/demo-$obj.yaml" --overwrite run.dir="$out/train-$obj" "${overrides[@]}"
  ckpt=$(latest "$out/train-$obj")
  echo; echo "== evaluate objective $obj from $ckpt"
  "${mpi[@]}" "$dfar" eval --checkpoint "$ckpt" --objective "$obj" --out "$out/eval-$obj" "${evals[@]}" \
    eval.max_new_tokens="$new"
done

echo; echo "== results (measured now, on this machine)"
"$dfar" eval compare "$out/eval-pretrained/eval_report.json" "$out/eval-l/eval_report.json" \
  "$out/eval-lr/eval_report.json" | tee "$out/comparison.txt"
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3  # Debian's, which sees python3-matplotlib.
if "$py" -c 'import matplotlib' 2>/dev/null; then
  "$py" tools/plot_loss.py "$out/loss.png" "L=$out/train-l/metrics.jsonl" "L+R=$out/train-lr/metrics.jsonl"
fi
cat <<DONE

reports      $out/eval-{pretrained,l,lr}/eval_report.{md,json}, predictions.jsonl, annotations.csv
checkpoints  $out/train-{l,lr}/checkpoints/
loss curve   $out/loss.png
wall time    $(( $(date +%s) - start )) s
DONE
