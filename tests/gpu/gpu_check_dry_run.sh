#!/usr/bin/env bash
# scripts/gpu_check.sh --dry-run passes on this (GPU-less) machine with the
# bundle that `make gpu-bundle` made: every step that needs no GPU runs from
# the bundle's own binaries and libraries, on the CPU, and the report's GPU
# section renders from the JSON it wrote.
# Usage: gpu_check_dry_run.sh BUNDLE
# shellcheck disable=SC2154
# shellcheck source=tests/cli/lib.sh
source "$(dirname "$0")/../cli/lib.sh"
BUNDLE=${1:?usage: gpu_check_dry_run.sh BUNDLE}
SCRIPT="$(dirname "$0")/../../scripts/gpu_check.sh"
[ -d "$BUNDLE" ] || { echo "FAIL: no bundle at $BUNDLE: run make gpu-bundle"; exit 1; }

# env -i: the bundle must bring everything but the system's basics.
expect_ok dry-run env -i PATH=/usr/bin:/bin HOME="$TMP" bash "$SCRIPT" --dry-run --bundle "$BUNDLE" --out "$TMP/out"
echo "$out" | tail -n 25
contains dry-run "all ok"
[ -s "$TMP/out/gpu_check.json" ] || fail "no gpu_check.json"
python3 - "$TMP/out/gpu_check.json" <<'PY' || fail "gpu_check.json lacks a check"
import json, sys
d = json.load(open(sys.argv[1]))
names = [s["name"] for s in d["steps"]]
want = ["versions", "nccl", "cuda-path", "bf16-fp32", "eval", "ckpt"] + ["train-%s-z%d-%s" % (m, z, p)
        for m in ("lora", "full") for z in (0, 2) for p in ("unpacked", "packed")] + [
        "train-full-z3-unpacked", "train-qlora-z0-unpacked"]
missing = [w for w in want if w not in names]
assert not missing, "missing checks: %s (have %s)" % (missing, names)
assert d["mode"] == "dry-run"
PY
grep -q "bf16 training" "$TMP/out/gpu_section.md" || fail "the GPU section has no training table"
finish
