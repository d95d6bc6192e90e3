#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make deps`, idempotently:
#   - the torch 2.11.0 wheel environment (scripts/torch_wheel.sh), the same
#     libtorch as the dfar build that `make bench` times, so that the Python
#     baselines differ from dfar only in the framework;
#   - a bench environment, $CACHE/bench-py, that sees that torch through a
#     .pth file and holds the pinned Hugging Face stack
#     (benchmarks/requirements-bench.txt, installed with --no-deps so pip never
#     replaces torch); remade when the requirements file changes;
#   - Debian's python3-matplotlib for the report's plots (report.py runs on
#     /usr/bin/python3).
# Prints the bench environment's python on its last line.
# Env: DFAR_CACHE  cache root (default: <repo>/.cache)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${DFAR_CACHE:-$REPO/.cache}
REQ=$REPO/benchmarks/requirements-bench.txt
ENV=$CACHE/bench-py

packages=(python3-matplotlib python3-numpy python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench-deps: installing ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

bash "$REPO/scripts/torch_wheel.sh" >/dev/null
torch_sp=$(bash "$REPO/scripts/torch_wheel.sh" --prefix)
stamp="$(sha256sum "$REQ" | cut -d' ' -f1) $torch_sp"
if [[ ! -f $ENV/dfar-stamp || $(cat "$ENV/dfar-stamp") != "$stamp" ]]; then
  echo "bench-deps: making $ENV from $REQ" >&2
  rm -rf "$ENV.tmp"
  python3 -m venv "$ENV.tmp"
  sp=$(find "$ENV.tmp/lib" -maxdepth 2 -type d -name site-packages | head -1)
  echo "$torch_sp" >"$sp/dfar-torch.pth"
  "$ENV.tmp/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --no-deps -r "$REQ" >&2
  echo "$stamp" >"$ENV.tmp/dfar-stamp"
  rm -rf "$ENV"
  mv "$ENV.tmp" "$ENV"
  # The venv's scripts name the .tmp path; the interpreter link does not care.
fi
"$ENV/bin/python" - <<'PY' >&2
import torch, transformers, peft
assert torch.__version__.startswith("2.11"), "bench-deps: expected torch 2.11, found " + torch.__version__
print("bench-deps: torch %s, transformers %s, peft %s" % (torch.__version__, transformers.__version__, peft.__version__))
PY
echo "$ENV/bin/python"
