#!/usr/bin/env bash
# cluster/ and launch/ files: the Kubernetes manifests parse and hold what a
# GPU MPIJob needs, the shell scripts parse (and pass shellcheck where it is
# installed), the sbatch scripts keep their #SBATCH lines where sbatch reads
# them, the Dockerfile pins its versions, and the SLURM scripts, run against
# stand-in srun/scontrol, resume, forward the stop signal and requeue.
# Needs no dfar binary, no cluster, no docker.
# $out comes from lib.sh's expect_ok / expect_error (SC2154); the stand-in
# scripts written below expand their own variables (SC2016).
# shellcheck disable=SC2154,SC2016
# shellcheck source=tests/cli/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1

shopt -s nullglob
yamls=(cluster/k8s/*.yaml)
scripts=(launch/*.sh cluster/slurm/*.sbatch tests/slurm/*.sh)
sbatches=(cluster/slurm/*.sbatch)
[ ${#yamls[@]} -ge 3 ] || fail "expected cluster/k8s/{train-mpijob,eval-mpijob,pvc}.yaml, found: ${yamls[*]}"
[ ${#sbatches[@]} -ge 3 ] || fail "expected three cluster/slurm/*.sbatch, found: ${sbatches[*]}"
[ -f cluster/docker/Dockerfile ] || fail "cluster/docker/Dockerfile is missing"
[ -f cluster/README.md ] || fail "cluster/README.md is missing"

# ---- Kubernetes manifests -------------------------------------------------------
if python3 -c 'import yaml' 2>/dev/null; then
  if ! out=$(python3 - "${yamls[@]}" 2>&1 <<'EOF'
import sys, yaml

problems = []
def check(ok, where, what):
    if not ok:
        problems.append(f"{where}: {what}")

docs = {}
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            docs[path] = [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        problems.append(f"{path}: does not parse: {e}")

pvc_names = {d["metadata"]["name"] for ds in docs.values() for d in ds
             if d.get("kind") == "PersistentVolumeClaim"}
check(pvc_names, "cluster/k8s", "no PersistentVolumeClaim")

def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}

for path, ds in docs.items():
    for d in ds:
        if d.get("kind") != "MPIJob":
            continue
        check(d.get("apiVersion") == "kubeflow.org/v2beta1", path, "apiVersion must be kubeflow.org/v2beta1")
        spec = d["spec"]
        slots = spec.get("slotsPerWorker")
        check(slots == 8, path, f"slotsPerWorker is {slots}, want 8")
        check("cleanPodPolicy" in spec.get("runPolicy", {}), path, "runPolicy.cleanPodPolicy missing")
        replicas = spec["mpiReplicaSpecs"]
        for role in ("Launcher", "Worker"):
            pod = replicas[role]["template"]["spec"]
            sc = pod.get("securityContext", {})
            check(sc.get("runAsNonRoot") is True, path, f"{role}: runAsNonRoot must be true")
            check(sc.get("runAsUser") == 1000, path, f"{role}: runAsUser must be 1000")
            check("fsGroup" in sc, path, f"{role}: fsGroup missing")
            claims = {v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", [])
                      if "persistentVolumeClaim" in v}
            check(claims and claims <= pvc_names, path, f"{role}: PVC {claims} not among {pvc_names}")
            c = pod["containers"][0]
            check(any(m["mountPath"] == "/data" for m in c.get("volumeMounts", [])), path,
                  f"{role}: no volume mounted at /data")
            gpus = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
            if role == "Launcher":
                check(gpus is None, path, "the launcher must not ask for GPUs")
                env = env_of(c)
                np_ = int(env.get("NP", "0"))
                want = replicas["Worker"]["replicas"] * slots
                check(np_ == want, path, f"NP={np_} but Worker replicas x slotsPerWorker = {want}")
                check(env.get("HOSTFILE") == "/etc/mpi/hostfile", path, "launcher HOSTFILE must be /etc/mpi/hostfile")
                cmd = " ".join(c.get("command", []))
                check("launch/" in cmd, path, f"the launcher should run launch/*.sh, runs: {cmd}")
            else:
                check(gpus == 8, path, f"a worker must ask for nvidia.com/gpu: 8, asks {gpus}")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
EOF
  ); then
    fail "k8s manifests:"$'\n'"$out"
  fi
else
  echo "note: python3 has no 'yaml' module (Debian: python3-yaml); skipped parsing cluster/k8s/*.yaml"
fi

# ---- shell scripts ----------------------------------------------------------------
for f in "${scripts[@]}"; do
  bash -n "$f" 2>"$TMP/bash-n" || fail "bash -n $f:"$'\n'"$(cat "$TMP/bash-n")"
done
for f in launch/train.sh launch/eval.sh launch/local.sh; do
  [ -x "$f" ] || fail "$f is not executable"
done
if command -v shellcheck >/dev/null 2>&1; then
  shellcheck -x -s bash "${scripts[@]}" >"$TMP/shellcheck" 2>&1 || fail "shellcheck:"$'\n'"$(cat "$TMP/shellcheck")"
else
  echo "note: shellcheck not installed; skipped it"
fi

# sbatch stops reading #SBATCH lines at the first command.
for f in "${sbatches[@]}"; do
  first=$(grep -nEv '^[[:space:]]*(#|$)' "$f" | head -n 1 | cut -d: -f1)
  late=$(awk -v first="$first" 'NR > first && /^#SBATCH/' "$f")
  [ -z "$late" ] || fail "$f: #SBATCH after the first command (sbatch ignores it): $late"
  grep -q "EDIT THESE" "$f" || fail "$f: no 'EDIT THESE' block"
  for key in --partition --account --nodes --ntasks-per-node --gpus-per-node --cpus-per-task --time; do
    grep -q "^#SBATCH $key=" "$f" || fail "$f: no #SBATCH $key="
  done
  grep -q "srun --mpi=pmix" "$f" || fail "$f: ranks should start with srun --mpi=pmix"
done
for f in cluster/slurm/train-*.sbatch; do
  grep -Eq '^#SBATCH --signal=(B:)?(TERM|USR1)@[0-9]+' "$f" || fail "$f: no #SBATCH --signal=...@SECONDS"
  grep -q '^#SBATCH --requeue' "$f" || fail "$f: no #SBATCH --requeue"
done

# ---- Dockerfile ---------------------------------------------------------------------
df=cluster/docker/Dockerfile
while read -r _ image _; do
  case "$image" in
    *:latest | *:latest@* ) fail "$df: FROM $image uses :latest" ;;
    *@sha256:*) ;;
    *:[0-9]*) ;;
    *) fail "$df: FROM $image has no pinned version tag" ;;
  esac
done < <(grep -iE '^FROM[[:space:]]' "$df")
grep -qiE '^FROM[[:space:]]' "$df" || fail "$df: no FROM line"
grep -Eq 'torch==\$\{TORCH_VERSION\}|torch==[0-9]' "$df" || fail "$df: torch is not pinned (torch==X.Y.Z)"
if grep -q 'TORCH_VERSION' "$df"; then
  grep -Eq '^ARG TORCH_VERSION=[0-9]+\.[0-9]+\.[0-9]+' "$df" || fail "$df: ARG TORCH_VERSION must be X.Y.Z"
fi
grep -q 'Torch_DIR=' "$df" || fail "$df: dfar must be built with -DTorch_DIR"
grep -Eq '^USER[[:space:]]+([1-9]|[a-z])' "$df" || fail "$df: must end as a non-root USER"
# Every package named in an apt-get install or pip install carries a version.
# Continuation lines are joined, then each command is split off at && and ;.
sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta' "$df" | sed 's/&&/\n/g; s/;/\n/g' >"$TMP/commands"
while read -r line; do
  read -r -a words <<<"$line"
  mode=""
  for w in "${words[@]}"; do
    w=${w//\"/}
    case "$w" in
      install) [ "$mode" = apt-get ] || [ "$mode" = pip ] && mode="$mode-install" ;;
      apt-get) mode=apt-get ;;
      pip | */pip) mode=pip ;;
      -* | http* | \$\{*\}) ;;
      *)
        case "$mode" in
          apt-get-install) [[ $w == *=* ]] || fail "$df: apt package '$w' has no =VERSION" ;;
          pip-install) [[ $w == *==* ]] || fail "$df: pip package '$w' has no ==VERSION" ;;
        esac
        ;;
    esac
  done
done <"$TMP/commands"

# ---- SLURM scripts against stand-in srun / scontrol ----------------------------------
# srun records its arguments and environment and exits $FAKE_RC; with
# FAKE_WAIT it waits for a signal first (SIGUSR1 -> exit 0, as dfar would).
mkdir -p "$TMP/bin" "$TMP/shared"
cat >"$TMP/bin/srun" <<'EOF'
#!/usr/bin/env bash
echo "$*" >"$FAKE_DIR/srun.args"
echo "OMP_NUM_THREADS=$OMP_NUM_THREADS SRUN_CPUS_PER_TASK=${SRUN_CPUS_PER_TASK:-}" >"$FAKE_DIR/srun.env"
if [ -n "${FAKE_WAIT:-}" ]; then
  got=""
  trap 'got=USR1' USR1
  trap 'echo TERM >"$FAKE_DIR/srun.got"; exit 137' TERM
  touch "$FAKE_DIR/srun.ready"
  for _ in $(seq 300); do
    if [ -n "$got" ]; then echo "$got" >"$FAKE_DIR/srun.got"; exit 0; fi
    sleep 0.1
  done
  exit 9
fi
exit "${FAKE_RC:-0}"
EOF
printf '#!/bin/sh\necho "$*" >>"$FAKE_DIR/scontrol.args"\n' >"$TMP/bin/scontrol"
chmod +x "$TMP/bin/srun" "$TMP/bin/scontrol"
slurm=(env -u CONFIG -u RUN_NAME -u CHECKPOINT -u DATA -u MODEL -u SLURM_RESTART_COUNT
  PATH="$TMP/bin:$PATH" FAKE_DIR="$TMP" DFAR_HOME="$PWD" SHARED_DIR="$TMP/shared"
  SLURM_JOB_ID=4242 SLURM_SUBMIT_DIR="$PWD" SLURM_CPUS_PER_TASK=6)
run_dir="$TMP/shared/runs/dfar-lr-1node"

expect_ok slurm-fresh "${slurm[@]}" bash cluster/slurm/train-1node.sbatch
args=$(cat "$TMP/srun.args" 2>/dev/null)
case "$args" in
  "--mpi=pmix "*"build/bin/dfar train --config configs/dfar-lr.yaml run.dir=$run_dir "*) ;;
  *) fail "slurm-fresh: srun got: $args" ;;
esac
[[ $args == *--resume* ]] && fail "slurm-fresh: --resume without a checkpoint"
grep -q "OMP_NUM_THREADS=6 SRUN_CPUS_PER_TASK=6" "$TMP/srun.env" || fail "slurm-fresh: env $(cat "$TMP/srun.env")"
[ -e "$TMP/scontrol.args" ] && fail "slurm-fresh: requeued a finished run"

mkdir -p "$run_dir/checkpoints/step-00000020"
echo '{}' >"$run_dir/checkpoints/step-00000020/index.json"
echo step-00000020 >"$run_dir/checkpoints/latest"
expect_ok slurm-resume "${slurm[@]}" bash cluster/slurm/train-1node.sbatch
grep -q -- "train --config configs/dfar-lr.yaml --resume run.dir=$run_dir" "$TMP/srun.args" ||
  fail "slurm-resume: srun got: $(cat "$TMP/srun.args")"

"${slurm[@]}" FAKE_RC=5 bash cluster/slurm/train-1node.sbatch >/dev/null 2>&1
rc=$?
[ "$rc" -eq 5 ] || fail "slurm-failure: exit $rc, want dfar's 5"
[ -e "$TMP/scontrol.args" ] && fail "slurm-failure: requeued a failed run"

# --signal=B:TERM@300 reaches the batch shell: the ranks get SIGUSR1 (srun
# would turn SIGTERM into SIGKILL), and the job requeues itself.
"${slurm[@]}" FAKE_WAIT=1 bash cluster/slurm/train-multinode.sbatch >"$TMP/slurm-term.log" 2>&1 &
pid=$!
ready=0
for _ in $(seq 100); do
  [ -e "$TMP/srun.ready" ] && { ready=1; break; }
  sleep 0.1
done
if [ "$ready" -eq 1 ]; then
  kill -TERM "$pid"
  rc=0
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || fail "slurm-term: exit $rc, want 0"$'\n'"$(cat "$TMP/slurm-term.log")"
  [ "$(cat "$TMP/srun.got" 2>/dev/null)" = USR1 ] || fail "slurm-term: srun did not get SIGUSR1"
  grep -q "^requeue 4242$" "$TMP/scontrol.args" 2>/dev/null || fail "slurm-term: no 'scontrol requeue 4242'"
else
  kill "$pid" 2>/dev/null
  fail "slurm-term: the stand-in srun never started"$'\n'"$(cat "$TMP/slurm-term.log")"
fi

# eval.sbatch evaluates the newest checkpoint of the run.
expect_ok slurm-eval "${slurm[@]}" RUN_NAME=dfar-lr-1node bash cluster/slurm/eval.sbatch
grep -q -- "build/bin/dfar eval --checkpoint $run_dir/checkpoints/step-00000020 --data $TMP/shared/data/dfar/DFAR_testset.csv" \
  "$TMP/srun.args" || fail "slurm-eval: srun got: $(cat "$TMP/srun.args")"
expect_error slurm-eval-none "${slurm[@]}" RUN_NAME=never-trained bash cluster/slurm/eval.sbatch
contains slurm-eval-none "no complete checkpoint"

finish
