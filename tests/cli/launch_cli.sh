#!/usr/bin/env bash
# launch/{train,eval,local}.sh: the mpirun command and rank table they build,
# their usage errors, and (through stand-in launchers) exit codes and the
# SIGTERM -> SIGUSR1 hand-off. Needs no GPU; the rank table's devices come
# from the dfar binary (`dfar config device`, the one device rule); the real
# mpirun is used only where installed.
# $out comes from lib.sh's expect_ok / expect_error (SC2154); the stand-in
# scripts written below expand their own variables (SC2016).
# shellcheck disable=SC2154,SC2016
# shellcheck source=tests/cli/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1

# The launchers read these; start each case from none of them set. GPUS_PER_HOST=0
# keeps the rank table independent of this machine's GPUs.
clean=(env -u NP -u CONFIG -u HOSTFILE -u THREADS -u DFAR -u MPIRUN -u EXTRA_MPI_ARGS
  -u RUN_DIR -u RESUME -u CUDA_VISIBLE_DEVICES -u GPUS_PER_HOST -u SLURM_JOB_ID)
cfg=configs/dfar-lr.yaml

# has_line NAME REGEX: some line of $out matches the extended REGEX.
has_line() {
  grep -Eq -- "$2" <<<"$out" || fail "$1: no line matches /$2/"$'\n'"--- output:"$'\n'"$out"
}
lacks() {
  case "$out" in
    *"$2"*) fail "$1: output should not contain '$2'"$'\n'"--- output:"$'\n'"$out" ;;
  esac
}
wait_for() {
  local _
  for _ in $(seq 100); do
    [ -e "$1" ] && return 0
    sleep 0.1
  done
  return 1
}

# ---- train.sh --dry-run -------------------------------------------------------
expect_ok dry-train "${clean[@]}" GPUS_PER_HOST=0 NP=2 CONFIG=$cfg launch/train.sh --dry-run
has_line dry-train '^mpirun command: mpirun '
has_line dry-train '^mpirun command: .* -np 2 '
has_line dry-train "^mpirun command: .* build/bin/dfar train --config $cfg\$"
contains dry-train "--bind-to none"
contains dry-train "-x OMP_NUM_THREADS="
contains dry-train "-x PATH"
contains dry-train "--oversubscribe"
has_line dry-train '^ +0 +localhost +0 +cpu +[0-9]+$'
has_line dry-train '^ +1 +localhost +1 +cpu +[0-9]+$'
[ "$(grep -c '^mpirun command: ' <<<"$out")" -eq 1 ] || fail "dry-train: want exactly one 'mpirun command:' line"

# Threads, pass-through environment, extra dfar arguments (shell-quoted).
expect_ok dry-env "${clean[@]}" GPUS_PER_HOST=0 NP=3 THREADS=2 NCCL_DEBUG=INFO NCCL_IB_HCA=mlx5 DFAR_LOG=x \
  EXTRA_MPI_ARGS="--mca btl self,tcp" DFAR=/opt/dfar/bin/dfar CONFIG=$cfg \
  launch/train.sh --dry-run train.lr=1e-3 "run.note=two words"
contains dry-env "-np 3 "
contains dry-env "-x OMP_NUM_THREADS=2 "
contains dry-env "-x DFAR_LOG -x NCCL_DEBUG -x NCCL_IB_HCA -x PATH"
contains dry-env "--mca btl self,tcp /opt/dfar/bin/dfar train --config $cfg train.lr=1e-3 'run.note=two words'"
# DFAR names a binary that is not here: the rank table cannot ask it for devices.
has_line dry-env '^ +2 +localhost +2 +\? +2$'
contains dry-env "devices show as ? until /opt/dfar/bin/dfar is built"

# A hostfile: ranks fill each host's slots in order; no --oversubscribe.
printf '# two nodes\nnodeA slots=2\n\nnodeB slots=2 max_slots=4\n' >"$TMP/hosts"
expect_ok dry-hostfile "${clean[@]}" GPUS_PER_HOST=2 NP=4 HOSTFILE="$TMP/hosts" CONFIG=$cfg launch/train.sh --dry-run
contains dry-hostfile "-np 4 --hostfile $TMP/hosts "
lacks dry-hostfile "--oversubscribe"
has_line dry-hostfile '^ +0 +nodeA +0 +cuda:0 '
has_line dry-hostfile '^ +1 +nodeA +1 +cuda:1 '
has_line dry-hostfile '^ +2 +nodeB +0 +cuda:0 '
has_line dry-hostfile '^ +3 +nodeB +1 +cuda:1 '
expect_error too-many-ranks "${clean[@]}" NP=5 HOSTFILE="$TMP/hosts" CONFIG=$cfg launch/train.sh --dry-run
contains too-many-ranks "NP=5 exceeds the 4 slot(s)"
expect_error missing-hostfile "${clean[@]}" NP=2 HOSTFILE="$TMP/nope" CONFIG=$cfg launch/train.sh --dry-run
contains missing-hostfile "nope"

# GPUs as `nvidia-smi -L` lists them: local rank k -> cuda:k; too few GPUs is flagged.
mkdir -p "$TMP/gpubin"
printf '#!/bin/sh\necho "GPU 0: NVIDIA H100 (UUID: GPU-a)"\necho "GPU 1: NVIDIA H100 (UUID: GPU-b)"\n' \
  >"$TMP/gpubin/nvidia-smi"
chmod +x "$TMP/gpubin/nvidia-smi"
expect_ok dry-gpus "${clean[@]}" PATH="$TMP/gpubin:$PATH" NP=2 CONFIG=$cfg launch/train.sh --dry-run
has_line dry-gpus '^ +0 +localhost +0 +cuda:0 '
has_line dry-gpus '^ +1 +localhost +1 +cuda:1 '
expect_ok dry-gpus-short "${clean[@]}" PATH="$TMP/gpubin:$PATH" NP=3 CONFIG=$cfg launch/train.sh --dry-run
contains dry-gpus-short "warning: 3 rank(s) on a host but 2 GPU(s)"
expect_ok dry-visible "${clean[@]}" PATH="$TMP/gpubin:$PATH" CUDA_VISIBLE_DEVICES=1 NP=1 CONFIG=$cfg \
  launch/train.sh --dry-run
contains dry-visible "-x CUDA_VISIBLE_DEVICES"
contains dry-visible "1 GPU(s) per host"
expect_ok dry-force-cpu "${clean[@]}" PATH="$TMP/gpubin:$PATH" NP=2 CONFIG=$cfg launch/train.sh --dry-run model.device=cpu
has_line dry-force-cpu '^ +1 +localhost +1 +cpu '

# One GPU per rank (SLURM --gpus-per-task=1, one GPU per pod): each rank sees
# one device, so every local rank takes cuda:0, as the binary decides.
expect_ok per-rank-gpu "$DFAR" config device --device cuda --gpus 1 0 1 2 3
[ "$(tr '\n' ' ' <<<"$out")" = "cuda:0 cuda:0 cuda:0 cuda:0 " ] || fail "per-rank-gpu: got $out"
expect_ok all-gpus "$DFAR" config device --gpus 8 0 3 7
[ "$(tr '\n' ' ' <<<"$out")" = "cuda:0 cuda:3 cuda:7 " ] || fail "all-gpus: got $out"
expect_ok cpu-many-ranks "$DFAR" config device --device cpu --gpus 1 0 1 2
[ "$(tr '\n' ' ' <<<"$out")" = "cpu cpu cpu " ] || fail "cpu-many-ranks: got $out"
expect_error cuda-none "$DFAR" config device --device cuda --gpus 0 0
contains cuda-none "no CUDA device is visible"
expect_ok dry-one-gpu-each "${clean[@]}" GPUS_PER_HOST=1 NP=3 CONFIG=$cfg launch/train.sh --dry-run
has_line dry-one-gpu-each '^ +2 +localhost +2 +cuda:0 '

# A torchrun-style environment without an MPI launcher is refused, naming
# both world sizes, instead of starting separate one-rank runs.
expect_error torchrun-env env RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 "$DFAR" train --config configs/tiny-lora-lr.yaml \
  run.dir="$TMP/torchrun" train.max_steps=1
contains torchrun-env "says world size 2 but MPI started 1 rank(s)"

# Usage errors exit 2 with a message naming the variable.
for bad in abc 0 -1 2x 1.5; do
  expect_error "bad-np[$bad]" "${clean[@]}" NP="$bad" CONFIG=$cfg launch/train.sh --dry-run
  contains "bad-np[$bad]" "NP='$bad' is not a positive integer"
done
"${clean[@]}" NP=abc CONFIG=$cfg launch/train.sh --dry-run >/dev/null 2>&1
[ $? -eq 2 ] || fail "bad-np: exit code should be 2"
expect_error no-config "${clean[@]}" NP=2 launch/train.sh --dry-run
contains no-config "CONFIG is not set"
expect_error missing-config "${clean[@]}" NP=2 CONFIG="$TMP/none.yaml" launch/train.sh --dry-run
contains missing-config "none.yaml"
expect_error bad-threads "${clean[@]}" NP=2 THREADS=many CONFIG=$cfg launch/train.sh --dry-run
contains bad-threads "THREADS='many'"
expect_error bad-resume "${clean[@]}" RESUME=maybe CONFIG=$cfg launch/train.sh --dry-run
contains bad-resume "RESUME='maybe'"

# RUN_DIR: run.dir override, and --resume once checkpoints/latest exists.
run="$TMP/runs/r1"
mkdir -p "$run/checkpoints"
expect_ok fresh "${clean[@]}" GPUS_PER_HOST=0 RUN_DIR="$run" CONFIG=$cfg launch/train.sh --dry-run
contains fresh "train --config $cfg run.dir=$run"
lacks fresh "--resume"
mkdir -p "$run/checkpoints/step-00000010"
echo '{}' >"$run/checkpoints/step-00000010/index.json"
echo step-00000010 >"$run/checkpoints/latest"
expect_ok auto-resume "${clean[@]}" GPUS_PER_HOST=0 RUN_DIR="$run" CONFIG=$cfg launch/train.sh --dry-run
contains auto-resume "train --config $cfg --resume run.dir=$run"
expect_ok no-resume "${clean[@]}" GPUS_PER_HOST=0 RESUME=no RUN_DIR="$run" CONFIG=$cfg launch/train.sh --dry-run
lacks no-resume "--resume"
expect_ok overwrite "${clean[@]}" GPUS_PER_HOST=0 RUN_DIR="$run" CONFIG=$cfg launch/train.sh --dry-run --overwrite
lacks overwrite "--resume"

# ---- eval.sh --dry-run --------------------------------------------------------
expect_ok dry-eval "${clean[@]}" GPUS_PER_HOST=0 NP=2 launch/eval.sh --dry-run --checkpoint runs/x/checkpoints/step-00000005
has_line dry-eval '^mpirun command: .* -np 2 '
has_line dry-eval '^mpirun command: .* build/bin/dfar eval --checkpoint runs/x/checkpoints/step-00000005$'
has_line dry-eval '^ +0 +localhost +0 +cpu '
has_line dry-eval '^ +1 +localhost +1 +cpu '
expect_ok dry-eval-config "${clean[@]}" GPUS_PER_HOST=0 NP=1 CONFIG=configs/eval-ethos.yaml \
  launch/eval.sh --dry-run --model m.gguf --data d.csv
contains dry-eval-config "eval --config configs/eval-ethos.yaml --model m.gguf --data d.csv"
expect_ok dry-eval-rundir "${clean[@]}" GPUS_PER_HOST=0 NP=2 RUN_DIR="$run" launch/eval.sh --dry-run
contains dry-eval-rundir "eval --checkpoint $run/checkpoints/step-00000010 run.dir=$run"
expect_error eval-bad-np "${clean[@]}" NP=abc launch/eval.sh --dry-run --model m.gguf
contains eval-bad-np "NP='abc'"
expect_error eval-missing-config "${clean[@]}" CONFIG="$TMP/none.yaml" launch/eval.sh --dry-run --model m.gguf
contains eval-missing-config "none.yaml"
expect_error eval-no-ckpt "${clean[@]}" RUN_DIR="$TMP/runs/empty" launch/eval.sh --dry-run
contains eval-no-ckpt "no checkpoint under"

# ---- local.sh -----------------------------------------------------------------
expect_ok dry-local "${clean[@]}" THREADS=3 CONFIG=$cfg launch/local.sh --dry-run train.max_steps=2
has_line dry-local "^command: env OMP_NUM_THREADS=3 build/bin/dfar train --config $cfg train.max_steps=2\$"
lacks dry-local "mpirun"
expect_error local-no-config "${clean[@]}" launch/local.sh --dry-run
contains local-no-config "CONFIG is not set"
printf '#!/bin/sh\necho "local: OMP_NUM_THREADS=$OMP_NUM_THREADS OMPI=${OMPI_COMM_WORLD_RANK:-none} $*"\n' >"$TMP/fake-dfar"
chmod +x "$TMP/fake-dfar"
expect_ok local-run "${clean[@]}" THREADS=2 DFAR="$TMP/fake-dfar" CONFIG=$cfg launch/local.sh x=1
contains local-run "local: OMP_NUM_THREADS=2 OMPI=none train --config $cfg x=1"

# ---- running, through a stand-in mpirun ---------------------------------------
cat >"$TMP/fake-mpirun" <<'EOF'
#!/usr/bin/env bash
echo "fake-mpirun $*"
exit "${FAKE_RC:-0}"
EOF
chmod +x "$TMP/fake-mpirun"
expect_ok run-fake "${clean[@]}" NP=2 MPIRUN="$TMP/fake-mpirun" DFAR="$TMP/fake-dfar" CONFIG=$cfg launch/train.sh a=b
contains run-fake "fake-mpirun -np 2 "
contains run-fake "$TMP/fake-dfar train --config $cfg a=b"
"${clean[@]}" FAKE_RC=7 MPIRUN="$TMP/fake-mpirun" DFAR="$TMP/fake-dfar" CONFIG=$cfg launch/train.sh >/dev/null 2>&1
[ $? -eq 7 ] || fail "run-fake-rc: train.sh must exit with mpirun's status (7)"
expect_error run-no-binary "${clean[@]}" MPIRUN="$TMP/fake-mpirun" DFAR="$TMP/nope" CONFIG=$cfg launch/train.sh
contains run-no-binary "is not an executable"
expect_error run-no-mpirun "${clean[@]}" MPIRUN="$TMP/no-mpirun" DFAR="$TMP/fake-dfar" CONFIG=$cfg launch/train.sh
contains run-no-mpirun "not found"

# SIGTERM to train.sh reaches the launcher as SIGUSR1 (ranks checkpoint, exit 0),
# and train.sh then exits 143 so that a supervisor restarts it.
cat >"$TMP/sig-mpirun" <<'EOF'
#!/usr/bin/env bash
got=""
trap 'got=USR1' USR1
trap 'got=TERM' TERM
touch "$SIG_DIR/ready"
for _ in $(seq 300); do
  if [ -n "$got" ]; then echo "$got" >"$SIG_DIR/got"; exit 0; fi
  sleep 0.1
done
exit 9
EOF
chmod +x "$TMP/sig-mpirun"
mkdir -p "$TMP/sig"
"${clean[@]}" SIG_DIR="$TMP/sig" MPIRUN="$TMP/sig-mpirun" DFAR="$TMP/fake-dfar" CONFIG=$cfg \
  launch/train.sh >"$TMP/sig/log" 2>&1 &
pid=$!
if wait_for "$TMP/sig/ready"; then
  kill -TERM "$pid"
  rc=0
  wait "$pid" || rc=$?
  [ "$rc" -eq 143 ] || fail "sigterm: train.sh exit $rc, want 143"$'\n'"$(cat "$TMP/sig/log")"
  [ "$(cat "$TMP/sig/got" 2>/dev/null)" = USR1 ] || fail "sigterm: the launcher did not get SIGUSR1"
  grep -q "stopped by SIGTERM after checkpointing" "$TMP/sig/log" || fail "sigterm: no stop note in log"
else
  kill "$pid" 2>/dev/null
  fail "sigterm: the stand-in mpirun never started"
fi

# ---- the real OpenMPI, where installed ----------------------------------------
if command -v mpirun >/dev/null 2>&1 && mpirun --version 2>/dev/null | grep -q "Open MPI"; then
  printf '#!/bin/sh\necho "rank=$OMPI_COMM_WORLD_RANK local=$OMPI_COMM_WORLD_LOCAL_RANK omp=$OMP_NUM_THREADS nccl=${NCCL_DEBUG:-unset} $*"\n' \
    >"$TMP/rank-echo"
  chmod +x "$TMP/rank-echo"
  expect_ok real-mpirun "${clean[@]}" NP=2 THREADS=1 NCCL_DEBUG=WARN DFAR="$TMP/rank-echo" CONFIG=$cfg \
    timeout 60 launch/train.sh k=v
  contains real-mpirun "rank=0 local=0 omp=1 nccl=WARN train --config $cfg k=v"
  contains real-mpirun "rank=1 local=1 omp=1 nccl=WARN train --config $cfg k=v"
else
  echo "note: OpenMPI's mpirun not installed; skipped the real-mpirun check"
fi

finish
