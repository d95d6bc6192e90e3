#!/usr/bin/env bash
# The GPU bundle that `make gpu-bundle` made passes scripts/check_bundle.sh,
# and the check can fail: a copy with one bundled library removed, a copy
# with a symbolic link, and a copy padded past 64 MiB are each refused with
# a message that names the problem.
# Usage: bundle_check.sh BUNDLE TORCH_LIB_DIR NVIDIA_DIR
# shellcheck disable=SC2154
# shellcheck source=tests/cli/lib.sh
source "$(dirname "$0")/../cli/lib.sh"
BUNDLE=${1:?usage: bundle_check.sh BUNDLE TORCH_LIB_DIR NVIDIA_DIR}
TORCH_LIB=${2:?}
NVIDIA=${3:?}
CHECK="$(dirname "$0")/../../scripts/check_bundle.sh"
[ -d "$BUNDLE" ] || { echo "FAIL: no bundle at $BUNDLE: run make gpu-bundle"; exit 1; }

expect_ok bundle bash "$CHECK" "$BUNDLE" "$TORCH_LIB" "$NVIDIA"
contains bundle "ELF files resolve inside the bundle"

victim=$(basename "$(ls "$BUNDLE"/lib/libyaml-cpp.so* | head -1)")
[ -n "$victim" ] || fail "the bundle has no libyaml-cpp (dfar needs it)"
cp -r "$BUNDLE" "$TMP/missing"
rm "$TMP/missing/lib/$victim"
expect_error missing bash "$CHECK" "$TMP/missing" "$TORCH_LIB" "$NVIDIA"
contains missing "needs $victim, found only outside the bundle"

cp -r "$BUNDLE" "$TMP/link"
ln -s ../bin/dfar "$TMP/link/lib/dfar-link"
expect_error link bash "$CHECK" "$TMP/link" "$TORCH_LIB" "$NVIDIA"
contains link "symbolic link (not carried)"

cp -r "$BUNDLE" "$TMP/big"
used=$(find "$BUNDLE" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
truncate -s $((64 * 1024 * 1024 - used + 4096)) "$TMP/big/padding"
expect_error big bash "$CHECK" "$TMP/big" "$TORCH_LIB" "$NVIDIA"
contains big "over the 64 MiB limit"

finish
