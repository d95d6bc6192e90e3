"""The evaluator's generation throughput on the demo's test rows.

Runs the demo's first evaluation exactly as scripts/demo.sh does (the
pre-trained SmolLM2-135M on 128 DFAR test rows spread over the file,
objective lr, greedy generation of up to 32 tokens, 2 MPI ranks x 1 thread,
model.dtype auto) and reads its eval_report.json:

  examples_per_s  test rows / the slowest rank's generation seconds (the
                  report's timing.examples_per_s: generation and verdict
                  parsing, not model loading or the reason judge)
  wall_s          the whole `dfar eval` command, loading and judging included

There is no same-run baseline to run: the reference is the same command at
commit bd6c193 (before finished rows left the batch and before dfar chose
its threads), measured on this machine on 2026-12-02: 12.39 examples/s,
28.2 s wall (AMD EPYC, avx512_bf16, libtorch 1.13, bf16). --reference-eps
overrides it. Correctness: the command exits 0 and every test row has a
prediction.

Example:
  python3 benchmarks/py/eval_throughput.py --dfar build/bin/dfar --json out.json
"""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Report, base_parser  # noqa: E402

REFERENCE_EPS = 12.39  # bd6c193, this machine, 2026-12-02 (see the docstring).
DEMO_EVAL = ["eval.limit=128", "eval.subset=stride", "eval.mode=generate", "prompt.max_seq_len=1024",
             "model.dtype=auto", "eval.mar_bank_limit=1000", "eval.max_new_tokens=32"]


def run_eval(args, out_dir, rows):
    mpi = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-x", "OMP_NUM_THREADS=1",
           "-x", "OMPI_MCA_mpi_yield_when_idle=1", "-np", str(args.ranks)]
    cmd = mpi + [args.dfar, "eval", "--config", "configs/demo-lr.yaml", "--model", args.model, "--objective", "lr",
                 "--out", out_dir] + DEMO_EVAL + ["eval.limit=%d" % rows]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-4000:], file=sys.stderr)
    return proc.returncode, wall, proc.stdout


def libtorch_version(dfar):
    out = subprocess.run([dfar, "version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    for line in out.splitlines():
        if line.startswith("libtorch ") and "cuda" not in line:
            return line.split()[1]
    return "unknown"


def line_after(text, marker):
    for line in text.splitlines():
        if marker in line:
            return line.split(marker, 1)[1].strip()
    return "unknown"


def main():
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("--dfar", default="build/bin/dfar")
    p.add_argument("--model", default=".cache/models/smollm2-135m-instruct.gguf")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--reference-eps", type=float, default=REFERENCE_EPS)
    args = p.parse_args()
    rows = 32 if args.quick else 128
    report = Report("eval-throughput", args)
    report.meta["ranks"] = args.ranks
    report.add_meta("dfar", args.dfar)
    report.add_meta("model", args.model)
    report.add_meta("command", "scripts/demo.sh step 1/5: dfar eval --objective lr " + " ".join(DEMO_EVAL))
    report.begin([("case", 14, 0), ("rows", 5, 0), ("ranks", 5, 0), ("examples_per_s", 14, 2),
                  ("generated_tokens", 16, 0), ("wall_s", 7, 1), ("vs_reference", 12, 3)])
    with tempfile.TemporaryDirectory() as tmp:
        rc, wall, log = run_eval(args, tmp, rows)
        report.add_meta("libtorch", libtorch_version(args.dfar))
        report.add_meta("dtype", line_after(log, "dfar: compute dtype "))
        report.add_meta("omp_wait_policy", line_after(log, "dfar: threads wait: "))
        ok = rc == 0
        eps, generated = float("nan"), 0
        if ok:
            with open(os.path.join(tmp, "eval_report.json")) as f:
                rep = json.load(f)
            with open(os.path.join(tmp, "predictions.jsonl")) as f:
                predictions = sum(1 for _ in f)
            eps = rep["timing"]["examples_per_s"]
            generated = sum(r["generated_tokens"] for r in rep["timing"]["ranks"])
            ok = predictions == rows
    report.row(["pretrained-lr", rows, args.ranks, eps, generated, wall, eps / args.reference_eps], ok)
    report.note("examples_per_s = rows / slowest rank's generation seconds (eval_report.json timing); "
                "wall_s = the whole command; vs_reference = examples_per_s / %.2f (bd6c193, same command and "
                "machine, 2026-12-02)" % args.reference_eps)
    report.add_summary("reference_examples_per_s", args.reference_eps)
    report.add_summary("speedup_vs_reference", eps / args.reference_eps)
    report.finish()


if __name__ == "__main__":
    main()
