#!/usr/bin/env bash
# `dfar generate` on the embedded default model, and on truncated weights.
source "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1
gguf=${DFAR_CACHE:-.cache}/models/smollm2-135m-instruct.gguf
if [ -s "$gguf" ]; then
  expect_ok generate "$DFAR" generate --model "$gguf" --prompt "Is it ethical to return a lost wallet?" \
    --max-new-tokens 16
  words=$(echo "$out" | wc -w)
  [ "$words" -ge 6 ] || fail "generation produced only $words words: $out"
  head -c 5000000 "$gguf" > "$TMP/truncated.gguf"
  expect_error truncated-gguf "$DFAR" generate --model "$TMP/truncated.gguf" --prompt hi --max-new-tokens 2
  contains truncated-gguf "truncated.gguf"
else
  echo "note: $gguf absent (run make deps): GGUF checks skipped"
fi
cp -r tests/fixtures/models/tiny-spm "$TMP/tiny"
head -c 100000 tests/fixtures/models/tiny-spm/model.safetensors > "$TMP/tiny/model.safetensors"
expect_error truncated-safetensors "$DFAR" generate --model "$TMP/tiny" --prompt hi --max-new-tokens 2
contains truncated-safetensors "model.safetensors"
expect_ok tiny "$DFAR" generate --model tests/fixtures/models/tiny-spm --prompt "The statement is" --max-new-tokens 4
finish
