# shellcheck shell=bash
# The private test cluster's client settings: sourced, not run, by
# tests/slurm/cluster.sh and by every test that talks to that cluster, so
# that sbatch, squeue, scontrol, scancel, sinfo and srun (also inside the
# jobs, which inherit the environment) all read the same slurm.conf.
#
#   DFAR_SLURM_DIR  the cluster's state dir: config, keys, spool, logs, pid
#                   files (default /tmp/dfar-slurm)
#
# Sets SLURM_CONF=$DFAR_SLURM_DIR/etc/slurm.conf, and drops the SLURM_*
# variables of any job this shell may run inside, which sbatch would
# otherwise read as defaults (partition, account, ...) from a real cluster.
DFAR_SLURM_DIR=${DFAR_SLURM_DIR:-/tmp/dfar-slurm}
while IFS= read -r dfar__var; do
  case "$dfar__var" in SLURM_* | SBATCH_* | SRUN_* | SALLOC_*) unset "$dfar__var" ;; esac
done < <(compgen -e)
unset dfar__var
export DFAR_SLURM_DIR
export SLURM_CONF=$DFAR_SLURM_DIR/etc/slurm.conf
