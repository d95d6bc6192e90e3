#!/usr/bin/env bash
# Runs `dfar train` as one process on this machine: no mpirun, no MPI
# environment (dfar is then rank 0 of 1 and uses all of THREADS).
#
#   CONFIG=configs/dfar-lr.yaml launch/local.sh [--dry-run] [dfar train args...]
#
# Environment: CONFIG (required), THREADS (OMP_NUM_THREADS; default: every
# core), DFAR (default build/bin/dfar), RUN_DIR and RESUME as in
# launch/train.sh. --dry-run prints the command ("command: ...") and exits 0.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=launch/common.sh
source "$here/common.sh"

dry=0
if [ "${1:-}" = --dry-run ]; then
  dry=1
  shift
fi
NP=1 dfar_check_common
dfar_check_config required
args=(train --config "$CONFIG")
resume=$(dfar_resume_args "$@")
[ -n "$resume" ] && args+=("$resume")
[ -n "${RUN_DIR:-}" ] && args+=("run.dir=$RUN_DIR")
args+=("$@")
threads=$(dfar_threads_per_rank 1)

if [ "$dry" -eq 1 ]; then
  echo "command: $(dfar_quote env "OMP_NUM_THREADS=$threads" "$DFAR_BIN" "${args[@]}")"
  exit 0
fi
[ -x "$DFAR_BIN" ] || dfar_die 2 "'$DFAR_BIN' is not an executable (build it, or set DFAR)"
export OMP_NUM_THREADS=$threads
exec "$DFAR_BIN" "${args[@]}"
