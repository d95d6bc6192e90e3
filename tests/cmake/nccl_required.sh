#!/usr/bin/env bash
# A libtorch with CUDA needs the NCCL backend: with NCCL nowhere to be found,
# configure stops and names every folder it looked in; -DDFAR_WITH_NCCL=OFF
# builds without it; and NCCL_ROOT points the search at an install.
# Runs cmake/Nccl.cmake through tests/cmake/nccl_probe (a few seconds).
# shellcheck disable=SC2154,SC2034
# shellcheck source=tests/cli/lib.sh
source "$(dirname "$0")/../cli/lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
# CMake wraps its messages: the output is read with whitespace runs as one space.
probe() {
  local rc=0
  cmake -S "$root/tests/cmake/nccl_probe" -B "$TMP/$1" -DDFAR_SOURCE_DIR="$root" "${@:2}" >"$TMP/$1.log" 2>&1 || rc=$?
  tr -s ' \n' ' ' <"$TMP/$1.log"
  return $rc
}

expect_error missing probe missing -DDFAR_TORCH_PREFIX=/nonexistent/torch -DDFAR_NCCL_SEARCH_SYSTEM=OFF
contains missing "has CUDA, but the NCCL backend cannot be built"
contains missing "/nonexistent/nvidia/nccl/lib"
contains missing "-DDFAR_WITH_NCCL=OFF"

expect_ok off probe off -DDFAR_TORCH_PREFIX=/nonexistent/torch -DDFAR_NCCL_SEARCH_SYSTEM=OFF -DDFAR_WITH_NCCL=OFF
contains off "NCCL backend: OFF"

# An install named by NCCL_ROOT is found (a stand-in with the two files).
mkdir -p "$TMP/nccl/include" "$TMP/nccl/lib"
touch "$TMP/nccl/include/nccl.h"
cp /bin/true "$TMP/nccl/lib/libnccl.so.2"
if probe_out=$(probe root -DDFAR_TORCH_PREFIX=/nonexistent/torch -DDFAR_NCCL_SEARCH_SYSTEM=OFF -DNCCL_ROOT="$TMP/nccl" 2>&1); then
  out=$probe_out
  contains root "NCCL backend: ON ($TMP/nccl/lib/libnccl.so.2)"
else
  # Without a CUDA toolkit the backend cannot be built whatever NCCL_ROOT says.
  out=$probe_out
  contains root "CUDA toolkit found: FALSE"
fi
finish
