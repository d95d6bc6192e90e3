#!/usr/bin/env bash
# `make demo`. Until the training, checkpoint and evaluator capabilities land,
# the demo shows what dfar already runs end to end: the DFAR data pipeline
# (statistics and rendered L / L+R examples with their loss masks) and
# generation from the embedded default model, SmolLM2-135M-Instruct.
set -euo pipefail
build=${1:-build}
dfar="$build/bin/dfar"
shared=${DFAR_SHARED:-../shared}
model=${DFAR_MODEL:-${DFAR_CACHE:-.cache}/models/smollm2-135m-instruct.gguf}

echo "== DFAR train set"
"$dfar" data stats --data "$shared/data/dfar/DFAR_trainset.csv"
echo
echo "== One test example, objective L (label only) and L+R (label + reason)"
"$dfar" data preview --data "$shared/data/dfar/DFAR_testset.csv" --objective l --n 1
"$dfar" data preview --data "$shared/data/dfar/DFAR_testset.csv" --objective lr --n 1
if [ -s "$model" ]; then
  echo
  echo "== SmolLM2-135M-Instruct (pre-trained, no fine-tuning), greedy, KV cache"
  "$dfar" generate --model "$model" --chat --prompt "Is it ethical to return a lost wallet?" --max-new-tokens 40
fi
