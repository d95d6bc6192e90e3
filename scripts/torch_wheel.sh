#!/usr/bin/env bash
# Installs the libtorch that dfar's GPU hosts run, the torch pip wheel
# 2.11.0 (manylinux_2_28, CUDA 13: PyPI's default Linux build, whose
# dependencies bring the CUDA 13 runtime and NCCL as nvidia-* wheels), into
# its own virtual environment under the cache, and prints its Torch_DIR
# (torch/share/cmake/Torch) for CMake.
#
# Idempotent: an environment that already holds that version is kept. The
# environment is made in a .tmp directory and renamed when pip has finished,
# so an interrupted install never looks complete. triton (640 MB, the
# Python compiler of torch.compile kernels) is removed after the install: no
# C++ build, test or benchmark here uses it. About 4.0 GB on disk; pip's
# downloads need about 3 GB more while it runs (--no-cache-dir: none kept).
#
# Usage: scripts/torch_wheel.sh            install if needed, print Torch_DIR
#        scripts/torch_wheel.sh --prefix   print the environment's site-packages
# Env:   DFAR_CACHE                 cache root (default: <repo>/.cache)
#        DFAR_TORCH_WHEEL_VERSION   default 2.11.0
set -euo pipefail

VERSION="${DFAR_TORCH_WHEEL_VERSION:-2.11.0}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${DFAR_CACHE:-$REPO/.cache}"
VENV="$CACHE/torch-$VERSION"

site_packages() { find "$1/lib" -maxdepth 2 -type d -name site-packages 2>/dev/null | head -1; }

installed() {
  local sp
  sp=$(site_packages "$1")
  [[ -n "$sp" && -d "$sp/torch-$VERSION.dist-info" && -f "$sp/torch/share/cmake/Torch/TorchConfig.cmake" ]]
}

# pip holds the downloaded wheels (about 3 GB) beside the 4.0 GB it installs.
NEED_GB=7
free_gb() { df -Pk "$1" | awk 'NR==2 {print int($4 / 1048576)}'; }

if ! installed "$VENV"; then
  mkdir -p "$CACHE"
  free=$(free_gb "$CACHE")
  if ((free < NEED_GB)); then
    echo "torch_wheel.sh: installing torch==$VERSION needs about $NEED_GB GB free; $CACHE has $free GB" \
         "(DFAR_CACHE=DIR puts it elsewhere)" >&2
    exit 1
  fi
  echo "torch_wheel.sh: installing torch==$VERSION into $VENV (about 3 min, 4.0 GB)" >&2
  rm -rf "$VENV.tmp"
  python3 -m venv "$VENV.tmp"
  # pip's downloads go under the cache too, on the disk that was checked.
  mkdir -p "$VENV.tmp/pip-tmp"
  TMPDIR="$VENV.tmp/pip-tmp" "$VENV.tmp/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input --no-cache-dir "torch==$VERSION" >&2
  rm -rf "$VENV.tmp/pip-tmp"
  "$VENV.tmp/bin/python" -m pip uninstall --quiet --yes triton >&2
  installed "$VENV.tmp" || { echo "torch_wheel.sh: pip finished but torch $VERSION is not in $VENV.tmp" >&2; exit 1; }
  rm -rf "$VENV"
  mv "$VENV.tmp" "$VENV"
fi

sp=$(site_packages "$VENV")
if [[ "${1:-}" == "--prefix" ]]; then
  echo "$sp"
else
  echo "$sp/torch/share/cmake/Torch"
fi
