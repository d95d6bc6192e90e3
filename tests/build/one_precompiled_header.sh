#!/usr/bin/env bash
# A build directory holds one precompiled torch header, dfar_torch's, which
# every torch binary reuses (dfar_use_torch_pch in CMakeLists.txt). One .gch
# is 570-690 MB; one per binary made each build directory 5 GB and filled a
# CI machine's disk. Asks ninja which .gch files the build makes, so files
# left behind by an older configuration do not count.
# Usage: one_precompiled_header.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: one_precompiled_header.sh BUILD_DIR}
[[ -f "$build/build.ninja" ]] || { echo "SKIP: $build is not a Ninja build"; exit 0; }
mapfile -t headers < <(ninja -C "$build" -t targets all | sed -n 's/^\(.*\.gch\): .*/\1/p' | sort -u)
printf 'precompiled headers built: %s\n' "${#headers[@]}"
printf '  %s\n' "${headers[@]}"
if [[ ${#headers[@]} -ne 1 || "${headers[0]}" != */dfar_torch.dir/* ]]; then
  echo "FAIL: expected exactly one precompiled header, dfar_torch's; a target that links dfar_torch" \
       "must call dfar_use_torch_pch" >&2
  exit 1
fi
echo "PASS"
