#!/usr/bin/env bash
# `make experiment`: the paper's protocol ("Beyond Labels") at the largest
# scale this machine allows, resumable, with a per-phase and a total ETA.
#   1. the pre-trained model on DFAR test (500), ETHOS (998) and the
#      hand-written held-out statements (data/heldout/statements.csv)
#   2. for each seed: fine-tune with L on all DFAR train rows, evaluate it on
#      the three sets; then the same with L+R
#   3. tools/experiment_report.py: docs/results.md and the loss-curve PNGs
# Every phase leaves <dir>/state/<phase>.done when it finished; a rerun skips
# those, resumes an interrupted training from its newest checkpoint and
# redoes an interrupted evaluation. SIGTERM or SIGUSR1 stop the running
# phase (a training checkpoints first; launch/common.sh passes them on as
# SIGUSR1) and exit 130. SIGINT (Ctrl-C) stops it at once, without that
# checkpoint: the rerun resumes from the last periodic one. Rerun to continue.
#
# Usage: scripts/experiment.sh [BUILD_DIR]   (the dfar binary: $DFAR, else BUILD_DIR/bin/dfar)
# Sizes (environment variables; defaults in brackets):
#   EXP_SEEDS [1 2 3]        seeds per objective (LoRA init, shuffle, dropout)
#   EXP_EPOCHS [1]           passes over the training rows
#   EXP_TRAIN_ROWS [0]       training rows, 0 = all 4,500
#   EXP_TEST_ROWS [0]        DFAR test rows, 0 = all 500
#   EXP_ETHOS_ROWS [0]       ETHOS rows, 0 = all 998
#   EXP_NP [2]               ranks;  EXP_DTYPE [auto];  EXP_SEQ [256]
#   EXP_NEW_TOKENS [160]     generation budget where a reason is read (L+R on
#                            DFAR and the held-out set); elsewhere decoding
#                            stops at the verdict's sentence
#   EXP_CKPT_EVERY [50]      optimizer steps between checkpoints (what an
#                            interruption can cost)
#   EXP_CONFIG_L / EXP_CONFIG_LR [configs/demo-l.yaml / demo-lr.yaml]
#   EXP_LAUNCH ["mpirun ... -np $EXP_NP"]  the launcher (e.g. "srun" inside
#                            an allocation, with the paper configs above)
#   EXP_TRAIN_ARGS / EXP_EVAL_ARGS []  more key=value overrides for every
#                            training / evaluation (split on whitespace)
#   EXP_DIR [runs/experiment]  EXP_DOC [docs/results.md]  DFAR_MODEL
#   EXP_README []            a README whose results block gets the headline
#                            row (`make experiment` passes README.md)
# The whole script is one block: bash reads all of it before running any, so
# editing this file while an experiment runs cannot change the running one.
{
set -euo pipefail
build=${1:-build}
dfar=${DFAR:-$build/bin/dfar}
here=$(cd "$(dirname "$0")/.." && pwd)
out=${EXP_DIR:-runs/experiment}
seeds=${EXP_SEEDS:-1 2 3}
epochs=${EXP_EPOCHS:-1}
train_rows=${EXP_TRAIN_ROWS:-0} test_rows=${EXP_TEST_ROWS:-0} ethos_rows=${EXP_ETHOS_ROWS:-0}
np=${EXP_NP:-2} dtype=${EXP_DTYPE:-auto} seq=${EXP_SEQ:-256} new_tokens=${EXP_NEW_TOKENS:-160}
ckpt_every=${EXP_CKPT_EVERY:-50}
config_l=${EXP_CONFIG_L:-configs/demo-l.yaml} config_lr=${EXP_CONFIG_LR:-configs/demo-lr.yaml}
model=${DFAR_MODEL:-${DFAR_CACHE:-.cache}/models/smollm2-135m-instruct.gguf}
doc=${EXP_DOC:-docs/results.md}
shared=${DFAR_SHARED:-../shared}
ethos="$shared/data/ethos/Ethos_Dataset_Binary.csv"
heldout=data/heldout/statements.csv
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMPI_MCA_mpi_yield_when_idle=1
read -r -a train_args <<< "${EXP_TRAIN_ARGS:-}"
read -r -a eval_args <<< "${EXP_EVAL_ARGS:-}"
read -r -a launch <<< "${EXP_LAUNCH:-mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS -x OMPI_MCA_mpi_yield_when_idle -np $np}"

die() { echo "experiment: $*" >&2; exit 2; }
[ -x "$dfar" ] || die "$dfar is not built (run: make experiment, or cmake --build $build --target dfar)"
[ -s "$model" ] || die "$model is missing (run: make deps)"
for f in "$config_l" "$config_lr" "$heldout" "$ethos" "$shared/data/dfar/DFAR_trainset.csv"; do
  [ -s "$f" ] || die "$f is missing"
done
[[ "$epochs" =~ ^[1-9][0-9]*$ ]] || die "EXP_EPOCHS must be a positive integer, not '$epochs'"
for s in $seeds; do [[ "$s" =~ ^[0-9]+$ ]] || die "EXP_SEEDS must be non-negative integers, not '$s'"; done
[ -n "$seeds" ] || die "EXP_SEEDS is empty"

mkdir -p "$out/state"
exec 9> "$out/state/lock"
flock -n 9 || die "another experiment is running in $out (lock: $out/state/lock)"

# The sizes are part of the run: a rerun with other sizes would mix results.
plan="model=$model seeds=$seeds epochs=$epochs train_rows=$train_rows test_rows=$test_rows ethos_rows=$ethos_rows"
plan+=" np=$np dtype=$dtype seq=$seq new_tokens=$new_tokens config_l=$config_l config_lr=$config_lr"
plan+=" train_args=${train_args[*]} eval_args=${eval_args[*]}"
if [ -f "$out/state/plan" ] && [ "$(cat "$out/state/plan")" != "$plan" ]; then
  die "$out was started with other sizes ($(cat "$out/state/plan")); use another EXP_DIR or remove $out"
fi
echo "$plan" > "$out/state/plan"

# Where and with what each invocation ran (tools/experiment_report.py prints it).
{
  echo "invocation $(date -u +%FT%TZ), commit $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "  $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc --all) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "  cpu flags: $(grep -o -w -E 'avx2|avx512f|avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  "$dfar" version | grep -E '^(dfar|libtorch [0-9])' | sed 's/^/  /'
} >> "$out/state/machine.txt"

# ---- phases -----------------------------------------------------------------
# "kind:seed:objective:set": train:1:l:-, eval:1:lr:ethos, eval:0:lr:dfar (pre-trained).
phases=()
for set in dfar ethos heldout; do phases+=("eval:0:lr:$set"); done
for s in $seeds; do
  for obj in l lr; do
    phases+=("train:$s:$obj:-")
    for set in dfar ethos heldout; do phases+=("eval:$s:$obj:$set"); done
  done
done

name_of() {  # phase -> file-safe name
  local kind seed obj set
  IFS=: read -r kind seed obj set <<< "$1"
  if [ "$kind" = train ]; then echo "train-$obj-seed$seed"; elif [ "$seed" = 0 ]; then echo "eval-pretrained-$set"
  else echo "eval-$obj-seed$seed-$set"; fi
}

# Seconds a phase is expected to take before one of its kind has run: the
# rates of a reduced run on the 2-core reference machine (2 ranks, bf16;
# README, "The experiment"), per row, plus start-up.
prior_seconds() {
  local kind obj set rows
  IFS=: read -r kind _ obj set <<< "$1"
  case "$kind:$set" in
    train:-) rows=$([ "$train_rows" = 0 ] && echo 4500 || echo "$train_rows")
      [ "$obj" = l ] && echo $((rows * epochs * 83 / 1000 + 10)) || echo $((rows * epochs * 276 / 1000 + 10)) ;;
    eval:dfar) rows=$([ "$test_rows" = 0 ] && echo 500 || echo "$test_rows")
      [ "$obj" = l ] && echo $((rows / 25 + 5)) || echo $((rows * 52 / 100 + 5)) ;;
    eval:ethos) rows=$([ "$ethos_rows" = 0 ] && echo 998 || echo "$ethos_rows"); echo $((rows * 6 / 100 + 5)) ;;
    eval:heldout) [ "$obj" = l ] && echo 5 || echo 26 ;;
  esac
}

# Measured seconds of finished phases of the same kind (objective and set;
# the pre-trained row is its own kind) stand in for the prior.
kind_of() {
  local kind seed obj set
  IFS=: read -r kind seed obj set <<< "$1"
  echo "$kind-$obj-$set-$([ "$seed" = 0 ] && echo pre || echo ft)"
}
estimate() {
  local k q done_file total=0 n=0
  k=$(kind_of "$1")
  for q in "${phases[@]}"; do
    done_file="$out/state/$(name_of "$q").done"
    if [ "$(kind_of "$q")" = "$k" ] && [ -f "$done_file" ]; then
      total=$((total + $(cut -f1 < "$done_file"))) n=$((n + 1))
    fi
  done
  if [ "$n" -gt 0 ]; then echo $((total / n)); else prior_seconds "$1"; fi
}
hms() {
  if [ "$1" -lt 3600 ]; then printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); else printf '%dh%02dm' $(($1 / 3600)) $(($1 % 3600 / 60)); fi
}

# ---- the phases' commands ------------------------------------------------------
# shellcheck source=../launch/common.sh
source "$here/launch/common.sh"  # dfar_run_forwarding_signals: SIGTERM/SIGUSR1 reach the ranks as SIGUSR1.
export DFAR_BIN=$dfar  # dfar_latest_checkpoint asks this binary.

train_cmd() {  # seed objective -> cmd
  local dir="$out/train-$2-seed$1" cfg=$config_l resume=(--overwrite)
  [ "$2" = lr ] && cfg=$config_lr
  local ckpt
  if ckpt=$(dfar_latest_checkpoint "$dir"); then
    resume=(--resume)
    echo "   resuming from $ckpt"
  fi
  cmd=("${launch[@]}" "$dfar" train --config "$cfg" "${resume[@]}" run.dir="$dir" run.seed="$1"
    data.limit="$train_rows" data.subset=stride data.val_fraction=0 train.epochs="$epochs" train.max_steps=0
    train.eval_every=0 train.schedule=cosine prompt.max_seq_len="$seq" model.dtype="$dtype" model.path="$model"
    ckpt.every="$ckpt_every" ckpt.keep_last=1 "${train_args[@]}")
}

eval_cmd() {  # seed objective set -> cmd
  local dest src=(--model "$model") data=()
  dest="$out/$(name_of "eval:$1:$2:$3")"
  [ "$1" = 0 ] || src=(--checkpoint "$(dfar_latest_checkpoint "$out/train-$2-seed$1")")
  case "$3" in
    dfar) data=(eval.limit="$test_rows") ;;
    ethos) data=(--config configs/eval-ethos.yaml --data "$ethos" eval.limit="$ethos_rows") ;;
    heldout) data=(--data "$heldout") ;;
  esac
  rm -rf "$dest"  # An interrupted evaluation starts again.
  cmd=("${launch[@]}" "$dfar" eval "${src[@]}" --objective "$2" --out "$dest" "${data[@]}" eval.subset=stride
    eval.mode=generate eval.max_new_tokens="$new_tokens" prompt.max_seq_len=1024 model.dtype="$dtype" run.seed="$1" "${eval_args[@]}")
}

# ---- the run ------------------------------------------------------------------
cat <<PLAN
================================================================================
dfar experiment: "Beyond Labels" on this machine (results: $doc)
  model    $model + LoRA (r=16, every projection)
  train    $([ "$train_rows" = 0 ] && echo "all 4,500" || echo "$train_rows") DFAR train rows x $epochs epoch(s) per objective, seeds: $seeds
  test     DFAR $([ "$test_rows" = 0 ] && echo "all 500" || echo "$test_rows"), ETHOS $([ "$ethos_rows" = 0 ] && echo "all 998" || echo "$ethos_rows"), held-out $(($(wc -l < "$heldout") - 1)) statements
  ranks    ${launch[*]} (dtype $dtype)
  output   $out/   (rerun to resume; state in $out/state/)
================================================================================
PLAN

# Between phases a stop signal ends the run at the next phase boundary; during
# one, dfar_run_forwarding_signals passes it on (and sets DFAR_STOPPED_BY).
between=""
# shellcheck disable=SC2317  # run by the traps below
stop_between() { between=$1; }
catch_between() {
  trap 'stop_between TERM' TERM
  trap 'stop_between USR1' USR1
  trap 'stop_between INT' INT
}
total=${#phases[@]}
start=$(date +%s)
catch_between
for i in "${!phases[@]}"; do
  p=${phases[$i]}
  name=$(name_of "$p")
  if [ -n "$between" ]; then
    echo "experiment: stopped by SIG$between before $name; rerun the same command to continue" >&2
    exit 130
  fi
  [ -f "$out/state/$name.done" ] && { echo "== [$((i + 1))/$total] $name: done earlier, skipped"; continue; }
  left=0
  for q in "${phases[@]:$i}"; do [ -f "$out/state/$(name_of "$q").done" ] || left=$((left + $(estimate "$q"))); done
  echo
  echo "== [$((i + 1))/$total] $name: ETA this phase ~$(hms "$(estimate "$p")"), all that is left ~$(hms "$left")"
  IFS=: read -r kind seed obj set <<< "$p"
  t0=$(date +%s) rc=0
  if [ "$kind" = train ]; then train_cmd "$seed" "$obj"; else eval_cmd "$seed" "$obj" "$set"; fi
  dfar_run_forwarding_signals USR1 "${cmd[@]}" > >(tee -a "$out/state/$name.log") 2>&1 || rc=$?
  catch_between
  if [ -n "$DFAR_STOPPED_BY" ] || [ "$rc" -eq 130 ]; then
    echo "experiment: stopped by SIG${DFAR_STOPPED_BY:-INT} during $name; rerun the same command to continue" >&2
    exit 130
  fi
  [ "$rc" -eq 0 ] || { echo "experiment: $name failed (exit $rc; log $out/state/$name.log); rerun to continue" >&2; exit "$rc"; }
  printf '%s\t%s\n' "$(($(date +%s) - t0))" "$(date -u +%FT%TZ)" > "$out/state/$name.done.tmp"
  mv "$out/state/$name.done.tmp" "$out/state/$name.done"
done
echo
echo "== all $total phases done ($(( $(date +%s) - start )) s in this invocation)"
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3  # Debian's, which sees python3-matplotlib.
readme=()
[ "${EXP_README:-}" != "" ] && readme=(--readme "$EXP_README")
"$py" "$here/tools/experiment_report.py" --run "$out" --out "$doc" "${readme[@]}"
exit
}
