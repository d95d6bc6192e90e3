#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make deps`, idempotently: Debian's
# python3-torch (the same libtorch 1.13 that dfar links, so the Python-eager
# baseline differs from dfar only in the framework), matplotlib, and the
# pinned pip packages of the HF baselines (benchmarks/requirements-bench.txt).
# pip runs with --no-deps: a resolver run would replace Debian's torch with a
# multi-GB CUDA wheel from PyPI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
packages=(python3-torch python3-numpy python3-matplotlib python3-pip python3-yaml python3-requests python3-psutil)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench-deps: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
/usr/bin/python3 -m pip install --quiet --break-system-packages --no-deps \
  -r "$here/../benchmarks/requirements-bench.txt"
/usr/bin/python3 - <<'PY'
import torch
assert torch.__version__.startswith("1.13"), "bench-deps: expected Debian's torch 1.13, found " + torch.__version__
import peft, transformers  # noqa: F401
print("bench-deps: torch %s, transformers %s, peft %s" % (torch.__version__, transformers.__version__, peft.__version__))
PY
