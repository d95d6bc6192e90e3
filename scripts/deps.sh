#!/usr/bin/env bash
# Installs what dfar needs on Debian 12, idempotently: Debian packages that
# are missing, the torch pip wheel (scripts/torch_wheel.sh), then the default
# model (scripts/fetch_model.sh) and the sentence encoder
# (scripts/fetch_encoder.sh). Safe to rerun.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

packages=(
  build-essential cmake ninja-build ccache pkg-config clang-format shellcheck python3-yaml python3-matplotlib python3-venv
  libtorch-dev libopenblas0-pthread
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools
  libyaml-cpp-dev libspdlog-dev libgtest-dev nlohmann-json3-dev
  libsentencepiece-dev libcli11-dev libpcre2-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "deps: all Debian packages present"
fi

# The torch pip wheel (2.11, CUDA 13): the default libtorch, and the one the
# GPU bundle is built against (scripts/torch_wheel.sh; DFAR_SKIP_TORCH_WHEEL=1
# skips it, for a Debian-libtorch-only build with DEFAULT_TORCH=1.13).
if [ "${DFAR_SKIP_TORCH_WHEEL:-0}" != 1 ]; then
  bash "$here/torch_wheel.sh" >/dev/null
fi

if [ -x "$here/fetch_model.sh" ] && [ "${DFAR_SKIP_MODEL:-0}" != 1 ]; then
  "$here/fetch_model.sh"
fi
# The sentence encoder that reads generated reasons (eval.encoder).
if [ "${DFAR_SKIP_MODEL:-0}" != 1 ]; then
  bash "$here/fetch_encoder.sh"
fi
