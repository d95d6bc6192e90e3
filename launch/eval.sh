#!/usr/bin/env bash
# Starts `dfar eval` on NP ranks through OpenMPI's mpirun.
#
#   NP=4 launch/eval.sh [--dry-run] --checkpoint runs/x/checkpoints/step-00000100 [--data CSV] [k=v ...]
#   NP=4 RUN_DIR=runs/x launch/eval.sh            # the newest checkpoint of runs/x
#
# Environment: as launch/train.sh (NP, HOSTFILE, THREADS, DFAR, MPIRUN,
# EXTRA_MPI_ARGS), plus CONFIG (optional here: adds --config CONFIG) and
# RUN_DIR (adds run.dir=RUN_DIR, so reports land in RUN_DIR/eval, and, when
# the arguments name neither --checkpoint nor --model, --checkpoint with the
# newest complete checkpoint under RUN_DIR/checkpoints).
#
# --dry-run prints the mpirun command and the rank table, then exits 0.
# Exit codes: dfar's, or 2 for a usage error here.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=launch/common.sh
source "$here/common.sh"
dfar_mpi_main eval "$@"
