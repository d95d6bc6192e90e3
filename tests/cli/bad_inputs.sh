#!/usr/bin/env bash
# Every kind of bad input the CLI reads, end to end: each must give exit 1, a
# "dfar: error:" message naming the file (and line, key, tensor or shard),
# no crash or "internal error", and no half-written output. The list and what
# each case prints are in docs/reliability.md.
source "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1
TINY=tests/fixtures/models/tiny-spm
TRAIN=("$DFAR" train --config configs/tiny-lora-lr.yaml train.eval_every=0)

# bad NAME CMD...: exit status 1 and a clear message; output in $out.
bad() {
  local name=$1 rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" -ne 1 ]; then fail "$name: expected exit 1, got $rc from: $*"$'\n'"$out"; fi
  case "$out" in
    *"dfar: error:"*) ;;
    *) fail "$name: no 'dfar: error:' line"$'\n'"$out" ;;
  esac
  case "$out" in
    *"internal error"* | *Segmentation* | *Aborted* | *AddressSanitizer* | *"runtime error"*)
      fail "$name: crashed or leaked an internal error"$'\n'"$out" ;;
  esac
}

# absent NAME PATH: nothing was written at PATH.
absent() { [ ! -e "$2" ] || fail "$1: '$2' was written"; }

# no_checkpoint NAME RUN_DIR: a failed run left nothing that looks complete.
no_checkpoint() {
  [ ! -e "$2/checkpoints/latest" ] || fail "$1: $2/checkpoints/latest exists"
  if compgen -G "$2/checkpoints/step-*/index.json" > /dev/null; then fail "$1: a checkpoint index was written"; fi
}

# ---- CSV ---------------------------------------------------------------------
H='Statement,Label,Reason'
printf '%s\na,1,r\n"never closed,0,r\n' "$H" > "$TMP/unterminated.csv"
bad csv-unterminated "$DFAR" data stats --data "$TMP/unterminated.csv"
contains csv-unterminated "unterminated.csv:3: unterminated quoted field"

printf '%s\na,1,r\nb,0\n' "$H" > "$TMP/fields.csv"
bad csv-field-count "$DFAR" data stats --data "$TMP/fields.csv"
contains csv-field-count "fields.csv:3: expected 3 fields (as in the header) but found 2"

printf '%s\na,1,r\nb\xff,0,r\n' "$H" > "$TMP/utf8.csv"
bad csv-utf8 "$DFAR" data stats --data "$TMP/utf8.csv"
contains csv-utf8 "utf8.csv:3: invalid UTF-8 at byte 2"

: > "$TMP/empty.csv"
bad csv-empty "$DFAR" data stats --data "$TMP/empty.csv"
contains csv-empty "empty.csv:1: empty file"

printf 'Statement,Label\na,1\n' > "$TMP/nocol.csv"
bad csv-missing-column "$DFAR" data stats --data "$TMP/nocol.csv"
contains csv-missing-column "nocol.csv: no column 'Reason'"

printf '%s\na,1,r\nb,maybe,r\n' "$H" > "$TMP/label.csv"
bad csv-unknown-label "$DFAR" data stats --data "$TMP/label.csv"
contains csv-unknown-label "label.csv:3: unknown label value 'maybe' in column 'Label'"

bad csv-train "${TRAIN[@]}" data.train="$TMP/label.csv" run.dir="$TMP/r-csv"
contains csv-train "label.csv:3: unknown label value 'maybe'"
no_checkpoint csv-train "$TMP/r-csv"

# ---- YAML config -------------------------------------------------------------
printf 'train:\n  lr: [0.1\n' > "$TMP/syntax.yaml"
bad yaml-syntax "$DFAR" config show "$TMP/syntax.yaml"
contains yaml-syntax "syntax.yaml:3:1: YAML syntax error"

printf 'train:\n  lr: 0.1\n  lrr: 0.2\n' > "$TMP/unknown.yaml"
bad yaml-unknown-key "$DFAR" config show "$TMP/unknown.yaml"
contains yaml-unknown-key "unknown.yaml:3: unknown key 'train.lrr'"

printf 'train:\n  lr: fast\n' > "$TMP/type.yaml"
bad yaml-wrong-type "$DFAR" config show "$TMP/type.yaml"
contains yaml-wrong-type "type.yaml:2: key train.lr: expected a finite number, got 'fast'"

printf 'train:\n  ? [lr]\n  : 0.1\n' > "$TMP/complex.yaml"
bad yaml-complex-key "$DFAR" config show "$TMP/complex.yaml"
contains yaml-complex-key "complex.yaml:2: a key must be a plain name, not a list"

bad yaml-override "$DFAR" config show configs/tiny-lora-lr.yaml train.max_steps=many
contains yaml-override "train.max_steps=many"

bad yaml-train "$DFAR" train --config "$TMP/type.yaml" run.dir="$TMP/r-yaml"
contains yaml-train "type.yaml:2: key train.lr"
absent yaml-train "$TMP/r-yaml"

# ---- missing files -----------------------------------------------------------
bad missing-config "$DFAR" config show "$TMP/nope.yaml"
contains missing-config "cannot open config file '$TMP/nope.yaml'"
bad missing-data "$DFAR" data stats --data "$TMP/nope.csv"
contains missing-data "$TMP/nope.csv: cannot open"
bad missing-model "$DFAR" generate --model "$TMP/nope-model" --prompt hi
contains missing-model "$TMP/nope-model"

# ---- model weights -----------------------------------------------------------
cp -r "$TINY" "$TMP/shape"
sed -i 's/"hidden_size": 64/"hidden_size": 32/' "$TMP/shape/config.json"
bad weights-shape "$DFAR" generate --model "$TMP/shape" --prompt hi -n 1
contains weights-shape "tensor 'model.embed_tokens.weight' has shape [512, 64] but the config"

cp -r "$TINY" "$TMP/trunc"
truncate -s 200000 "$TMP/trunc/model.safetensors"
bad safetensors-truncated "$DFAR" generate --model "$TMP/trunc" --prompt hi -n 1
contains safetensors-truncated "trunc/model.safetensors: tensor '"
contains safetensors-truncated "(truncated file?)"

cp -r "$TINY" "$TMP/forged"
printf '\377\377\377\377\377\377\377\177' | dd of="$TMP/forged/model.safetensors" bs=1 count=8 conv=notrunc 2> /dev/null
bad safetensors-forged-header "$DFAR" generate --model "$TMP/forged" --prompt hi -n 1
contains safetensors-forged-header "forged/model.safetensors: header length 9223372036854775807 exceeds the file size"

# GGUF: the synthetic fuzz seed always; the cached SmolLM2 file when present.
head -c 300 fuzz/corpus/fuzz_gguf/synthetic.gguf > "$TMP/synthetic-cut.gguf"
bad gguf-truncated-metadata "$DFAR" generate --model "$TMP/synthetic-cut.gguf" --prompt hi -n 1
contains gguf-truncated-metadata "synthetic-cut.gguf"
GGUF=${DFAR_CACHE:-.cache}/models/smollm2-135m-instruct.gguf
if [ -f "$GGUF" ]; then
  head -c 3000000 "$GGUF" > "$TMP/cut.gguf"
  bad gguf-truncated "$DFAR" generate --model "$TMP/cut.gguf" --prompt hi -n 1
  contains gguf-truncated "cut.gguf: truncated: tensor 'token_embd.weight' data ends at byte"
else
  echo "SKIP: $GGUF is absent; truncated real GGUF not checked"
fi

# ---- checkpoints -------------------------------------------------------------
expect_ok ckpt-run "${TRAIN[@]}" run.dir="$TMP/run" train.max_steps=2 ckpt.every=2
CK="$TMP/run/checkpoints/step-00000002"
SHARD="shard-00000-of-00001.h5"
[ -f "$CK/$SHARD" ] || fail "ckpt-run: no $CK/$SHARD"$'\n'"$out"

# Flip one byte inside the data of the first parameter dataset.
flip_first_param() {
  local shard=$1 name off b
  read -r name off < <(h5dump -p -H "$shard" | awk '/GROUP "/ {g = $2} /OFFSET/ {if (g ~ /param/) {print g, $2; exit}}')
  [ -n "$off" ] || { fail "flip: no parameter dataset found in $shard"; return; }
  b=$(od -An -tu1 -j "$off" -N1 "$shard" | tr -d ' ')
  printf "$(printf '\\%03o' $((b ^ 255)))" | dd of="$shard" bs=1 seek="$off" count=1 conv=notrunc 2> /dev/null
}
if command -v h5dump > /dev/null; then
  cp -r "$TMP/run" "$TMP/run-bad"
  flip_first_param "$TMP/run-bad/checkpoints/step-00000002/$SHARD"
  bad ckpt-corrupt-verify "$DFAR" ckpt verify "$TMP/run-bad/checkpoints/step-00000002"
  contains ckpt-corrupt-verify "tensor 'param/layers.0.attn."
  contains ckpt-corrupt-verify "checksum mismatch"
  contains ckpt-corrupt-verify "$SHARD"
  bad ckpt-corrupt-eval "$DFAR" eval --checkpoint "$TMP/run-bad/checkpoints/step-00000002" \
    --data data/samples/dfar_sample.csv --out "$TMP/ev-corrupt" eval.limit=2 eval.max_new_tokens=2
  contains ckpt-corrupt-eval "checksum mismatch"
  contains ckpt-corrupt-eval "tensor 'param/layers.0.attn."
  absent ckpt-corrupt-eval "$TMP/ev-corrupt/eval_report.json"
  before=$(ls "$TMP/run-bad/checkpoints")
  bad ckpt-corrupt-resume "${TRAIN[@]}" run.dir="$TMP/run-bad" train.max_steps=4 ckpt.every=2 --resume
  contains ckpt-corrupt-resume "checksum mismatch"
  [ "$(ls "$TMP/run-bad/checkpoints")" = "$before" ] || fail "ckpt-corrupt-resume: the checkpoints dir changed"
else
  echo "SKIP: h5dump is absent; corrupted-shard checks skipped"
fi

cp -r "$CK" "$TMP/noshard"
rm "$TMP/noshard/$SHARD"
bad ckpt-missing-shard-verify "$DFAR" ckpt verify "$TMP/noshard"
contains ckpt-missing-shard-verify "noshard/$SHARD is missing"
bad ckpt-missing-shard-eval "$DFAR" eval --checkpoint "$TMP/noshard" --data data/samples/dfar_sample.csv \
  --out "$TMP/ev-noshard" eval.limit=2 eval.max_new_tokens=2
contains ckpt-missing-shard-eval "missing shard $SHARD"
absent ckpt-missing-shard-eval "$TMP/ev-noshard/eval_report.json"

cp -r "$CK" "$TMP/newer"
python3 - "$TMP/newer/index.json" << 'PY'
import json, sys
index = json.load(open(sys.argv[1]))
index["version"] = 99
json.dump(index, open(sys.argv[1], "w"))
PY
bad ckpt-newer-index "$DFAR" ckpt inspect "$TMP/newer"
contains ckpt-newer-index "index version 99 is newer than this dfar supports"
bad ckpt-newer-index-verify "$DFAR" ckpt verify "$TMP/newer"
contains ckpt-newer-index-verify "index version 99 is newer"

cp -r "$CK" "$TMP/cutindex"
head -c 1000 "$CK/index.json" > "$TMP/cutindex/index.json"
bad ckpt-truncated-index "$DFAR" ckpt inspect "$TMP/cutindex"
contains ckpt-truncated-index "cutindex/index.json is not valid JSON"

# ---- run dirs ----------------------------------------------------------------
# Permission bits do not stop root (CI runs as root), so there the run dir's
# parent is a regular file: mkdir fails for every user with ENOTDIR.
if [ "$(id -u)" -eq 0 ]; then
  : > "$TMP/not-a-dir"
  ro="$TMP/not-a-dir/run"
  why="Not a directory"
else
  mkdir "$TMP/ro" && chmod 555 "$TMP/ro"
  ro="$TMP/ro/run"
  why="Permission denied"
fi
bad run-dir-unwritable "${TRAIN[@]}" run.dir="$ro" train.max_steps=2
contains run-dir-unwritable "cannot create run dir '$ro'"
contains run-dir-unwritable "$why"
absent run-dir-unwritable "$ro"

sum_before=$(cd "$TMP/run" && find . -type f | sort | xargs md5sum | md5sum)
bad run-dir-exists "${TRAIN[@]}" run.dir="$TMP/run" train.max_steps=2
contains run-dir-exists "run dir '$TMP/run' already exists; pass --resume to continue it or --overwrite to replace it"
sum_after=$(cd "$TMP/run" && find . -type f | sort | xargs md5sum | md5sum)
[ "$sum_before" = "$sum_after" ] || fail "run-dir-exists: the existing run dir was modified"

finish
