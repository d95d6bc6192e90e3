#!/usr/bin/env bash
# cluster/k8s/*.yaml against the Kubeflow MPI Operator's v2beta1 MPIJob schema
# (tests/k8s/mpijob-v2beta1.schema.json) and dfar's rules: slotsPerWorker =
# a worker's GPUs, RDMA and IPC_LOCK for multi-node jobs, non-root pods,
# resource limits, a launcher that starts dfar through mpirun. First the
# checker's self-test on manifests broken on purpose, then the real files.
# No cluster runs them. Needs python3 with PyYAML; exits 77 (skipped) without.
# The dfar argument is unused. $out comes from lib.sh's expect_ok (SC2154).
# shellcheck disable=SC2154
# shellcheck source=tests/cli/lib.sh
source "$(dirname "$0")/../cli/lib.sh"
cd "$(dirname "$0")/../.." || exit 1

if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "skipped: python3 has no 'yaml' module (Debian: python3-yaml)"
  exit 77
fi

expect_ok self-test python3 tests/k8s/check_manifests.py --self-test
echo "$out"
contains self-test "self-test cases ok"
expect_ok manifests python3 tests/k8s/check_manifests.py
echo "$out"
contains manifests "MPIJob document(s) in"

finish
