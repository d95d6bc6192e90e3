#!/usr/bin/env bash
# The demo's training step on two libtorch builds, side by side in one run:
# what the README's "Which libtorch" choice rests on.
#
# Each build trains the demo's L+R run (configs/demo-lr.yaml at the demo's
# small size: SmolLM2-135M LoRA, 2 MPI ranks x 1 thread, 192 train rows,
# sequence 160, dtype auto) for STEPS steps, once on this CPU's native
# kernels and once with the kernels held to AVX2 (as `make test-avx2`; dtype
# auto then picks fp32). The figure is the median tokens/s of the steps
# after the first two, from metrics.jsonl, and the median step time; the
# builds alternate so that a slow spell of the shared machine hits both.
#
# Usage: benchmarks/libtorch_step.sh BUILD_A BUILD_B [STEPS]   (default 10)
# Output: a table on stdout and benchmarks/results/libtorch_step.json
set -euo pipefail
A=${1:?usage: libtorch_step.sh BUILD_A BUILD_B [STEPS]}
B=${2:?usage: libtorch_step.sh BUILD_A BUILD_B [STEPS]}
STEPS=${3:-10}
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FORCE_AVX2=(OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}" ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2
  MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2)
export OMP_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1
mpi=(mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS -x OMPI_MCA_mpi_yield_when_idle
  -x OPENBLAS_CORETYPE -x ONEDNN_MAX_CPU_ISA -x DNNL_MAX_CPU_ISA -x MKL_ENABLE_INSTRUCTIONS -x ATEN_CPU_CAPABILITY -np 2)

one_run() { # BUILD KERNELS -> prints the run dir
  local build=$1 kernels=$2 dir
  dir="$TMP/$(basename "$build")-$kernels"
  local envs=()
  [ "$kernels" = avx2 ] && envs=("${FORCE_AVX2[@]}")
  env "${envs[@]}" "${mpi[@]}" "$build/bin/dfar" train --config configs/demo-lr.yaml --overwrite run.dir="$dir" \
    data.limit=192 data.subset=stride train.max_steps="$STEPS" prompt.max_seq_len=160 model.dtype=auto \
    train.log_every=1 >"$dir.log" 2>&1 || { tail -n 20 "$dir.log" >&2; return 1; }
  echo "$dir"
}

runs=()
for kernels in native avx2; do
  for build in "$A" "$B"; do
    runs+=("$build|$kernels|$(one_run "$build" "$kernels")")
  done
done

python3 - "$REPO/benchmarks/results/libtorch_step.json" "${runs[@]}" <<'PY'
import json, os, statistics, subprocess, sys
out, runs = sys.argv[1], sys.argv[2:]
rows = []
for entry in runs:
    build, kernels, run_dir = entry.split("|")
    steps = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl")) if '"tokens_per_s"' in l]
    timed = steps[2:] or steps
    version = subprocess.run([os.path.join(build, "bin", "dfar"), "version"], capture_output=True, text=True).stdout
    torch = next((l.split()[1] for l in version.splitlines() if l.startswith("libtorch ")), "?")
    config = open(os.path.join(run_dir, "config.yaml")).read()
    dtype = "bf16" if "dtype: bf16" in config else "fp32"
    rows.append({"libtorch": torch, "build": build, "kernels": kernels, "dtype": dtype, "steps": len(steps),
                 "tokens_per_s": statistics.median(s["tokens_per_s"] for s in timed)})
for kernels in ("native", "avx2"):
    pair = [r for r in rows if r["kernels"] == kernels]
    for r in pair:
        r["vs_first"] = r["tokens_per_s"] / pair[0]["tokens_per_s"]
print("%-10s %-8s %-6s %6s %12s %9s" % ("libtorch", "kernels", "dtype", "steps", "tokens_per_s", "vs_first"))
for r in rows:
    print("%-10s %-8s %-6s %6d %12.1f %9.2f" % (r["libtorch"], r["kernels"], r["dtype"], r["steps"],
                                             r["tokens_per_s"], r["vs_first"]))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "")
json.dump({"bench": "libtorch_step", "cpu": cpu, "avx512_bf16": "avx512_bf16" in flags, "rows": rows},
          open(out, "w"), indent=1)
PY
