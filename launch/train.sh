#!/usr/bin/env bash
# Starts `dfar train` on NP ranks through OpenMPI's mpirun.
#
#   CONFIG=configs/dfar-lr.yaml NP=4 launch/train.sh [--dry-run] [dfar train args...]
#
# Environment: NP (ranks, default 1), CONFIG (required), HOSTFILE, THREADS
# (OMP_NUM_THREADS per rank; default cores / ranks per host), DFAR (default
# build/bin/dfar), MPIRUN (default mpirun), EXTRA_MPI_ARGS, RUN_DIR (adds
# run.dir=RUN_DIR), RESUME (auto|yes|no; auto adds --resume when
# RUN_DIR/checkpoints/latest exists). Every set NCCL_* and DFAR_* variable,
# PATH, LD_LIBRARY_PATH and CUDA_VISIBLE_DEVICES reach the ranks.
#
# --dry-run prints the mpirun command and the rank -> host/device/threads
# table, then exits 0 without running anything.
#
# GPUs: one rank per GPU; dfar binds local rank k to CUDA device k itself
# (see launch/common.sh), so NP (or a host's slots) must not exceed its GPUs.
#
# Signals: SIGTERM/SIGUSR1 to this script reach the ranks as SIGUSR1; they
# checkpoint and exit 0, and this script then exits 128+signal so that a
# supervisor knows the run is unfinished and starts it again (RESUME=auto).
# Exit codes: dfar's, or 2 for a usage error here.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=launch/common.sh
source "$here/common.sh"
dfar_mpi_main train "$@"
