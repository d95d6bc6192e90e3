#!/usr/bin/env bash
# The one command for a GPU host: checks dfar's CUDA path end to end with the
# bundle that `make gpu-bundle` made (.gpu/), and writes what it measured as
# JSON and a log into $OUT. Needs torch 2.11 + CUDA 13 on the host (python3
# finds it), no network, no ../shared, no Debian -dev package. About 3-5 min
# on one H100/H200 (estimated: it has not run on one yet); each step has its
# own time limit, no step starts after 7 minutes, and none runs past 7 min
# 50 s, so the whole ends inside 8.
#
#   1 versions   device, driver, torch, NCCL (dfar version, nvidia-smi)
#   2 nccl       NCCL all-reduce (sum, max, avg), reduce-scatter, all-gather,
#                broadcast in fp32 and bf16 at world size 1, exact values
#                (tests/mpi/nccl_mpitest.cpp)
#   2b cuda-path the CUDA path's unit checks (tests/train/cuda_path_test.cpp):
#                fused AdamW, dropout replay, generator state, bf16 RoPE,
#                packed span attention
#   3 train-*    20 bf16 steps of a random ~1.07B Llama (Llama-3.2-1B shape,
#                SmolLM2's tokenizer, model.init random) on DFAR samples:
#                LoRA and full fine-tuning x ZeRO 0 and 2 x packing off and
#                on; tokens/s, MFU, the allocator's peak memory each
#   4 bf16-fp32  first-step loss of the tiny fixture model in bf16 on CUDA
#                against fp32 on CPU, same weights and batch (RoPE, dtype)
#   5 eval       dfar eval with generation on the GPU, 8 test examples, from
#                the checkpoint of the LoRA run
#   6 ckpt       that checkpoint verified shard by shard (dfar ckpt verify),
#                then reloaded by a resumed run that trains 2 more steps
#
# Output: $OUT/gpu_check.json (benchmarks/report.py turns it into the GPU
# section of docs/benchmarks.md), $OUT/gpu_check.log, and per-step files.
# Exit status: 0 when every step passed.
#
# --dry-run runs every step that needs no GPU, here, on the CPU: the same
# commands with device cpu, a 2-layer model with the same tokenizer and 2
# steps, the NCCL test allowed to skip; then renders the report from its
# JSON. `make test` runs it (tests/gpu/gpu_check_dry_run.sh), so that the
# script works the first time it meets a GPU.
#
# Usage: scripts/gpu_check.sh [--dry-run] [--bundle DIR] [--out DIR]
# The check functions run in a child bash through run_step (SC2317).
# shellcheck disable=SC2317
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="$REPO/.gpu"
OUT_DIR="${OUT:-$REPO/runs/gpu-check}"
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --bundle) BUNDLE=${2:?--bundle needs a directory}; shift ;;
    --out) OUT_DIR=${2:?--out needs a directory}; shift ;;
    -h | --help) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
BUNDLE=$(cd "$BUNDLE" 2>/dev/null && pwd) || { echo "gpu_check.sh: no bundle at $BUNDLE (make gpu-bundle)" >&2; exit 2; }
mkdir -p "$OUT_DIR" || exit 2
OUT_DIR=$(cd "$OUT_DIR" && pwd)
rm -rf "$OUT_DIR/steps" "$OUT_DIR/runs" "$OUT_DIR/gpu_check.json"
exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1

# shellcheck source=/dev/null
. "$BUNDLE/env.sh" || exit 2
cd "$REPO" || exit 2
SUMMARIZE=(python3 "$REPO/scripts/gpu_check/summarize.py")
DEADLINE_S=420 END_S=470

if [ "$DRY" -eq 1 ]; then
  MODE=dry-run DEVICE=cpu STEPS=2 MICRO_BATCH=2 SEQ=256
  MODEL="$OUT_DIR/llama-tiny"
  mkdir -p "$MODEL"
  cp "$BUNDLE"/assets/llama-1b/tokenizer*.json "$MODEL/"
  # The 1B config at 2 layers of width 64: the same tokenizer and code paths.
  python3 - "$BUNDLE/assets/llama-1b/config.json" "$MODEL/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
else
  MODE=gpu DEVICE=cuda STEPS=20 MICRO_BATCH=16 SEQ=512
  MODEL="$BUNDLE/assets/llama-1b"
fi
TRAIN_CSV="$BUNDLE/assets/data/DFAR_trainset.csv"
TEST_CSV="$BUNDLE/assets/data/DFAR_testset.csv"
echo "gpu_check: mode $MODE, bundle $BUNDLE ($(cat "$BUNDLE/COMMIT")), out $OUT_DIR, torch $DFAR_TORCH_DIR"

# run_step NAME LIMIT_S FUNCTION: runs FUNCTION under a time limit and records
# ok / failed / skipped with its detail (the JSON that FUNCTION writes to
# $DETAIL). A function returns 0 ok, 1 failed, 3 skipped (dry-run only).
# A step never runs past END_S (7 min 50 s): its limit is cut to what is left.
run_step() {
  local name=$1 limit=$2 fn=$3 start status rc left
  left=$((END_S - SECONDS))
  if [ "$SECONDS" -ge "$DEADLINE_S" ] || [ "$left" -lt 15 ]; then
    "${SUMMARIZE[@]}" step "$OUT_DIR" "$name" "not-run" 0 '{"why": "the 7-minute budget was spent"}'
    return
  fi
  [ "$limit" -le "$left" ] || limit=$left
  echo "== $name"
  DETAIL="$OUT_DIR/detail-$name.json"
  echo '{}' >"$DETAIL"
  start=$SECONDS
  # The step runs in a child bash (so that timeout can stop it) that gets
  # every function and the settings below.
  timeout --kill-after=10 "$limit" bash -o pipefail -c "$(declare -f); $(declare -p MODE DEVICE STEPS MICRO_BATCH \
    SEQ MODEL TRAIN_CSV TEST_CSV OUT_DIR DETAIL DRY BUNDLE SUMMARIZE); $fn"
  rc=$?
  case $rc in
    0) status=ok ;;
    3) status=skipped ;;
    124 | 137) status=failed; echo "$name: over its ${limit}s limit" ;;
    *) status=failed ;;
  esac
  echo "-- $name: $status ($((SECONDS - start)) s)"
  "${SUMMARIZE[@]}" step "$OUT_DIR" "$name" "$status" "$((SECONDS - start))" "$(cat "$DETAIL")"
}

# run_dfar LOG ARGS...: dfar with its output in LOG (and the tail on failure).
run_dfar() {
  local log=$1
  shift
  if ! dfar "$@" >"$log" 2>&1; then
    echo "dfar $* failed; the end of $log:"
    tail -n 30 "$log"
    return 1
  fi
}

check_versions() {
  {
    dfar version
    echo "glibc $(ldd --version 2>/dev/null | head -1 | grep -o '[0-9.]*$')"
    python3 -c 'import torch; print("python torch", torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null
    if command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader | sed 's/^/nvidia-smi: /'
    fi
  } >"$OUT_DIR/version.txt" 2>&1
  cat "$OUT_DIR/version.txt"
  local need have
  need=$(sed -n 's/^glibc //p' "$BUNDLE/REQUIRES")
  have=$(sed -n 's/^glibc //p' "$OUT_DIR/version.txt")
  if [ -n "$need" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
    echo "this host's glibc $have is older than the $need that the bundle needs"
    return 1
  fi
  if grep -q MISMATCH "$OUT_DIR/version.txt"; then echo "the libtorch loaded is not the one dfar was built with"; return 1; fi
  if [ "$DRY" -eq 0 ] && ! grep -q '^cuda device 0:' "$OUT_DIR/version.txt"; then echo "no CUDA device found"; return 1; fi
  return 0
}

# gtest_step NAME MIN_RUN BINARY ARGS...: a gtest binary whose JSON report
# becomes the step's detail; on a GPU host every test must run (none
# skipped) and at least MIN_RUN of them, in the dry run skipping is allowed.
gtest_step() {
  local name=$1 min_run=$2 rc full
  shift 2
  "$@" --gtest_output="json:$OUT_DIR/$name.json" >"$OUT_DIR/$name.log" 2>&1
  rc=$?
  tail -n 5 "$OUT_DIR/$name.log"
  "${SUMMARIZE[@]}" gtest "$OUT_DIR/$name.json" >"$DETAIL" || return 1
  cat "$DETAIL"
  [ "$rc" -eq 0 ] || return 1
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["run"] >= int(sys.argv[2]) and d["skipped"] == 0 else 3)' \
    "$DETAIL" "$min_run"
  full=$?
  if [ "$full" -ne 0 ] && [ "$DRY" -eq 0 ]; then echo "$name: tests skipped on a GPU host"; return 1; fi
  return "$full"
}

check_nccl() { gtest_step nccl_mpitest 9 nccl_mpitest; }

# The CUDA path's unit checks (tests/train/cuda_path_test.cpp): torch's fused
# AdamW on the GPU against dfar's CPU loop, dropout replay under activation
# checkpointing with the CUDA generator, the CUDA generator state round trip
# of a resume, bf16 RoPE at positions 256..511, packed span attention
# against the dense mask in bf16. They skip without a GPU (dry run).
check_cuda_path() { gtest_step cuda_path 5 dfar_torch_tests --gtest_filter='CudaPathTest.*'; }

# train_case NAME LORA ZERO PACK [QUANT]: one training run of the matrix.
train_case() {
  local name=$1 lora=$2 zero=$3 pack=$4 quant=${5:-none} lr=1e-5
  [ "$lora" = true ] && lr=2e-4
  local dir="$OUT_DIR/runs/$name"
  run_dfar "$OUT_DIR/train-$name.log" train --overwrite run.dir="$dir" run.seed=7 \
    model.path="$MODEL" model.init=random model.device="$DEVICE" model.dtype=bf16 model.quant="$quant" \
    lora.enabled="$lora" lora.dropout=0 dist.zero="$zero" prompt.pack="$pack" prompt.objective=lr \
    prompt.max_seq_len="$SEQ" sampler.micro_batch="$MICRO_BATCH" train.max_steps="$STEPS" train.lr="$lr" \
    train.warmup_ratio=0 data.train="$TRAIN_CSV" data.test="$TEST_CSV" ckpt.every="$STEPS" eval.encoder="" ||
    return 1
  "${SUMMARIZE[@]}" metrics "$dir" "$STEPS" >"$DETAIL" || return 1
  cat "$DETAIL"
}

train_lora_z0_unpacked() { train_case lora-z0-unpacked true 0 false; }
train_lora_z0_packed() { train_case lora-z0-packed true 0 true; }
train_lora_z2_unpacked() { train_case lora-z2-unpacked true 2 false; }
train_lora_z2_packed() { train_case lora-z2-packed true 2 true; }
train_full_z0_unpacked() { train_case full-z0-unpacked false 0 false; }
train_full_z0_packed() { train_case full-z0-packed false 0 true; }
train_full_z2_unpacked() { train_case full-z2-unpacked false 2 false; }
train_full_z2_packed() { train_case full-z2-packed false 2 true; }
train_full_z3_unpacked() { train_case full-z3-unpacked false 3 false; }
train_qlora_z0_unpacked() { train_case qlora-z0-unpacked true 0 false nf4; }

# bf16 on the device against fp32 on the CPU: the loss of the first step,
# before any update, on the same weights and batch. Tolerance 2% of the fp32
# loss: bf16 keeps 8 significant bits (unit roundoff 2^-8 = 0.39%); the tiny
# model's logits pass through ~20 rounded operations (2 layers of norms,
# 7 projections, attention, residuals), so their relative error is about
# sqrt(20) x 0.39% = 1.7% at most in the aligned worst case, and the
# cross-entropy moves by at most the largest logit error (it is 1-Lipschitz
# in the logits under the max-norm) while the logits of this model are below
# the loss in size. A RoPE or dtype fault moves it by far more.
check_bf16_against_fp32() {
  local fixture=tests/fixtures/models/tiny-spm common=()
  common=(model.path="$fixture" model.init=pretrained lora.enabled=false prompt.objective=lr prompt.max_seq_len=192
    sampler.micro_batch=4 train.max_steps=1 train.lr=0 data.train="$TRAIN_CSV" data.test="$TEST_CSV" eval.encoder="" run.seed=7)
  run_dfar "$OUT_DIR/bf16.log" train --overwrite run.dir="$OUT_DIR/runs/bf16" model.device="$DEVICE" model.dtype=bf16 \
    "${common[@]}" || return 1
  run_dfar "$OUT_DIR/fp32.log" train --overwrite run.dir="$OUT_DIR/runs/fp32" model.device=cpu model.dtype=fp32 \
    "${common[@]}" || return 1
  python3 - "$OUT_DIR/runs/bf16/metrics.jsonl" "$OUT_DIR/runs/fp32/metrics.jsonl" "$DEVICE" >"$DETAIL" <<'PY'
import json, sys
def first_loss(path):
    for line in open(path):
        row = json.loads(line)
        if "loss" in row:
            return row["loss"]
    raise SystemExit(path + ": no step recorded")
bf16, fp32 = first_loss(sys.argv[1]), first_loss(sys.argv[2])
rel = abs(bf16 - fp32) / abs(fp32)
print(json.dumps({"device": sys.argv[3], "loss_bf16": bf16, "loss_fp32_cpu": fp32, "relative_difference": rel,
                  "tolerance": 0.02, "ok": rel <= 0.02}))
PY
  cat "$DETAIL"
  python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["ok"] else 1)' "$DETAIL"
}

latest_checkpoint() { dfar ckpt latest "$OUT_DIR/runs/lora-z0-unpacked"; }

check_eval() {
  local ckpt
  ckpt=$(latest_checkpoint) || { echo "the LoRA run left no checkpoint"; return 1; }
  run_dfar "$OUT_DIR/eval.log" eval --checkpoint "$ckpt" --data "$TEST_CSV" --out "$OUT_DIR/runs/eval" \
    model.device="$DEVICE" eval.mode=generate eval.limit=8 eval.max_new_tokens=24 eval.encoder="" || return 1
  python3 - "$OUT_DIR/runs/eval" >"$DETAIL" <<'PY'
import glob, json, os, sys
path = os.path.join(sys.argv[1], "eval_report.json")
if not os.path.exists(path):
    raise SystemExit(path + " is missing")
report = json.load(open(path))
timing = report.get("timing", {})
print(json.dumps({"examples": report["n"], "accuracy": report["metrics"]["accuracy"],
                  "unparseable": report["metrics"].get("unparseable"), "wall_seconds": timing.get("wall_seconds"),
                  "tokens_per_s": timing.get("tokens_per_s")}))
if report["n"] != 8:
    raise SystemExit("expected 8 examples in the report, found %d" % report["n"])
PY
  local rc=$?
  cat "$DETAIL"
  return "$rc"
}

check_checkpoint() {
  local ckpt
  ckpt=$(latest_checkpoint) || { echo "the LoRA run left no checkpoint"; return 1; }
  run_dfar "$OUT_DIR/ckpt-verify.log" ckpt verify "$ckpt" || return 1
  tail -n 3 "$OUT_DIR/ckpt-verify.log"
  local dir="$OUT_DIR/runs/lora-z0-unpacked" more=$((STEPS + 2))
  run_dfar "$OUT_DIR/resume.log" train --config "$dir/config.yaml" --resume train.max_steps="$more" || return 1
  grep -q "resumed from" "$OUT_DIR/resume.log" "$dir"/logs/rank-00000.log || { echo "the run did not resume"; return 1; }
  "${SUMMARIZE[@]}" metrics "$dir" "$more" >"$DETAIL" || return 1
  cat "$DETAIL"
}

run_step versions 60 check_versions
run_step nccl 120 check_nccl
run_step cuda-path 90 check_cuda_path
for fn in train_lora_z0_unpacked train_lora_z0_packed train_lora_z2_unpacked train_lora_z2_packed \
  train_full_z0_unpacked train_full_z0_packed train_full_z2_unpacked train_full_z2_packed train_full_z3_unpacked \
  train_qlora_z0_unpacked; do
  name=${fn#train_}
  run_step "train-${name//_/-}" 150 "$fn"
done
run_step bf16-fp32 120 check_bf16_against_fp32
run_step eval 120 check_eval
run_step ckpt 120 check_checkpoint

"${SUMMARIZE[@]}" assemble "$OUT_DIR" "$MODE"
status=$?
if [ "$DRY" -eq 1 ]; then
  python3 "$REPO/benchmarks/report.py" --gpu-only "$OUT_DIR/gpu_check.json" >"$OUT_DIR/gpu_section.md" || status=1
  echo "gpu_check: the report's GPU section renders ($(wc -l <"$OUT_DIR/gpu_section.md") lines)"
fi
exit $status
