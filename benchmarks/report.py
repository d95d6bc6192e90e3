"""Regenerates docs/benchmarks.md and the plots from benchmarks/results/*.json.

Run by `make bench` (benchmarks/run.sh) after the benchmarks; it can be rerun
alone: /usr/bin/python3 benchmarks/report.py --results benchmarks/results --out docs/benchmarks.md
Every figure in the page comes from a results file of the same run; the
headline table divides each figure by its goal from the benchmark issue.
"""
import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "scaling"))
import alpha_beta  # noqa: E402


def load(results, name):
    path = os.path.join(results, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def fmt(v):
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "OK" if v else "FAIL"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return "%.0f" % v
        if abs(v) >= 10:
            return "%.1f" % v
        if abs(v) >= 0.01:
            return "%.3f" % v
        return "%.2e" % v
    return str(v)


def md_table(rows, columns=None):
    if not rows:
        return "_no rows_\n"
    columns = columns or [k for k in rows[0].keys()]
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out) + "\n"


def meta_line(data):
    m = data["meta"]
    keys = ["cpu", "cpu_flags", "hardware_threads", "omp_num_threads", "omp_wait_policy", "ranks", "libtorch", "torch",
            "transformers", "peft", "mpi", "git_commit"]
    return "`" + "; ".join("%s=%s" % (k, m[k]) for k in keys if k in m) + "`"


def row_groups(rows):
    """Consecutive rows with the same keys: a benchmark that printed two tables (gradsync: per bucket size,
    then the overlap case) gets two."""
    groups = []
    for r in rows:
        if groups and set(groups[-1][-1]) == set(r):
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


def table_columns(rows, declared):
    """The declared column order for the keys these rows have, then their other keys, `correct` last."""
    keys = list(rows[0].keys())
    declared = [c for c in (declared or []) if c != "correct"]
    if not all(c in keys for c in declared):
        declared = []  # Columns of another table of the same benchmark: the rows' own order.
    order = [c for c in declared if c in keys]
    order += [k for k in keys if k not in order and k != "correct"]
    return order + (["correct"] if "correct" in keys else [])


def section(data, title, text=""):
    if data is None:
        return "## %s\n\n_not run: its results file is missing._\n\n" % title
    s = "## %s\n\n%s\n\n%s\n\n" % (title, text, meta_line(data))
    for rows in row_groups(data["rows"]):
        s += md_table(rows, table_columns(rows, data.get("columns"))) + "\n"
    for n in data.get("notes", []):
        s += "- %s\n" % n
    return s + "\n"


def rows_by_case(data):
    return {r.get("case"): r for r in (data or {}).get("rows", [])}


class Goals:
    """Collects (figure, measured, goal, direction) for the headline table."""

    def __init__(self):
        self.rows = []

    def add(self, what, measured, goal, higher_is_better=True, unit="", data=None):
        """`data`: the results the figure comes from; its torch version and CPU flags go in the row."""
        where = measured_with(*(data if isinstance(data, tuple) else (data,)))
        if measured is None:
            self.rows.append({"figure": what, "measured": "not measured", "goal": goal, "ratio to goal": "",
                              "met": "no", **where})
            return
        ratio = measured / goal if higher_is_better else goal / measured
        self.rows.append({"figure": what, "measured": fmt(float(measured)) + unit,
                          "goal": ("≥ " if higher_is_better else "≤ ") + fmt(float(goal)) + unit,
                          "ratio to goal": "%.2f" % ratio, "met": "yes" if ratio >= 1 else "no", **where})


def native_bf16(data):
    flags = (data or {}).get("meta", {}).get("cpu_flags", "")
    return "avx512_bf16" in flags or "amx_bf16" in flags


def measured_with(*datas):
    """The torch version(s) and CPU flags of the results a figure comes from."""
    torch, flags = [], []
    for data in datas:
        m = (data or {}).get("meta", {})
        for key in ("libtorch", "torch"):
            v = m.get(key)
            if v and not v.startswith("not linked") and v not in torch:
                torch.append(v)
        if m.get("cpu_flags") and m["cpu_flags"] not in flags:
            flags.append(m["cpu_flags"])
    return {"torch": " / ".join(torch) or "—", "cpu flags": " / ".join(flags) or "—"}


def plot_allreduce(data, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = data["rows"]
    x = [r["bytes"] for r in rows]
    plt.figure(figsize=(6.4, 4))
    plt.semilogx(x, [r["dfar_busbw"] for r in rows], "o-", label="dfar Communicator (MPI backend)")
    plt.semilogx(x, [r["mpi_busbw"] for r in rows], "s--", label="raw MPI_Allreduce")
    plt.xlabel("message size (bytes)")
    plt.ylabel("bus bandwidth (GB/s)")
    plt.title("all-reduce, %s ranks, fp32 sum (this CPU host)" % data["meta"]["ranks"])
    plt.grid(True, which="both", alpha=0.3)
    plt.legend()
    plt.tight_layout()
    plt.savefig(path, dpi=110)
    plt.close()


def plot_scaling(model, measured, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.figure(figsize=(6.4, 4))
    for name, rows in model.items():
        plt.semilogx([r["gpus"] for r in rows], [r["efficiency"] for r in rows], "o-", base=2,
                     label="model: " + name.split(" (")[0])
    for label, eff in measured:
        plt.semilogx([2], [eff], "x", base=2, markersize=9, label="measured CPU 1→2 ranks: " + label)
    plt.ylim(0, 1.05)
    plt.xlabel("GPUs (H100, 8 per node)")
    plt.ylabel("weak-scaling efficiency")
    plt.title("dfar data-parallel scaling: alpha-beta model")
    plt.grid(True, which="both", alpha=0.3)
    plt.legend(fontsize=7)
    plt.tight_layout()
    plt.savefig(path, dpi=110)
    plt.close()


def scaling_measurements(results):
    """Weak and strong 1 -> 2 rank efficiencies from the scaling-*.json runs."""
    out = []
    for case in ("smollm2-lora-bf16", "smollm2-full-bf16"):
        runs = {k: load(results, "scaling-%s-%s" % (case, k)) for k in ("np1-b4", "np1-b2", "np2-b2")}
        if any(v is None or not v["rows"] for v in runs.values()):
            continue
        t = {k: v["rows"][0]["step_ms"] for k, v in runs.items()}
        out.append({"case": case, "step_ms 1 rank b2": t["np1-b2"], "step_ms 1 rank b4": t["np1-b4"],
                    "step_ms 2 ranks b2": t["np2-b2"], "weak efficiency": t["np1-b2"] / t["np2-b2"],
                    "strong efficiency": t["np1-b4"] / (2 * t["np2-b2"])})
    return out


# Which figures hold on which kind of CPU (docs/portability.md).
CPU_KINDS_NOTE = (
    "**Which CPUs these figures hold on.** Each metadata line names the CPU's flags (`cpu_flags`: avx2, avx512f, "
    "avx512_bf16, amx_bf16; runs before that key existed name only the model). The bf16 figures hold only where "
    "`avx512_bf16` or `amx_bf16` is present: on an AVX2-only CPU a bf16 GEMM is emulated, 30-50x slower than fp32 "
    "(1.3-2.1 against 54-65 GFLOP/s, measured on an AMD EPYC without AVX-512), and `model.dtype=auto` trains in fp32 "
    "there. The fp32 figures hold on both kinds, up to the CPUs' own speed. The runs below were on an AMD EPYC with "
    "avx512_bf16.")


GPU_NOT_MEASURED = (
    "_Not measured._ No GPU machine was lent to the sessions that built this suite. `make gpu-bundle` and "
    "`scripts/gpu_check.sh` (run on a GPU host, results copied to `benchmarks/results/gpu_check.json`) fill "
    "this section: NCCL collectives, bf16 training of a ~1B Llama (LoRA and full, ZeRO 0 and 2, packing off "
    "and on) with tokens/s, MFU and peak memory, bf16-on-CUDA against fp32-on-CPU loss, generation and a "
    "checkpoint round trip. Until then the scaling model's GPU compute time rests on a CPU stand-in.\n\n"
    "Goals of the CUDA path that wait for a GPU host, each not yet measured: a 1B-class full fine-tune in bf16 "
    "at MFU >= 40% on one H100/H200 (torchtitan reports 33-39% for 8B FSDP), `bench_step --device cuda`; a "
    "7B-shaped LoRA step's tokens/s against HF transformers + peft on the same model and batch, where those can "
    "be installed on the host.\n\n")


ATTENTION_TEXT = (
    "Packed rows (DFAR-sized samples of 40-120 tokens), forward + backward of SmolLM2-135M in fp32: attention by "
    "per-sample spans (causal SDPA per sample) against one call with the dense [B,1,T,T] mask. The trainer uses "
    "spans where libtorch's SDPA has mask-free fused kernels (libtorch >= 2), the dense mask on 1.13.")


def attention_section(default, torch211):
    """The packed-attention section from bench_attention's JSON: the default build, and the torch 2.11 build's
    run when one was saved (results/attention_torch2.11.json)."""
    text = section(default, "attention: packed batches", ATTENTION_TEXT)
    if torch211 is not None:
        text += section(torch211, "attention: packed batches, libtorch 2.11 build", "The same benchmark, built "
                        "against the torch 2.11 wheel (`build-alt/bin/bench_attention`).")
    return text


def memory_rows(results):
    """bench_memory's rows at 1, 2 and 4 ranks, with each stage's bytes against the same stage on 1 rank."""
    runs = {n: load(results, "memory-np%d" % n) for n in (1, 2, 4)}
    if not runs[1]:
        return [], runs
    one = {r["zero"]: r["total_MB"] for r in runs[1]["rows"]}
    rows = []
    for n, data in runs.items():
        for r in (data or {}).get("rows", []):
            rows.append({"ZeRO": r["zero"], "ranks": n, "params MB": r["param_MB"], "grads MB": r["grad_MB"],
                         "optimizer MB": r["optim_MB"], "total MB": r["total_MB"],
                         "vs 1 rank": r["total_MB"] / one[r["zero"]], "ideal": 1.0 / n if r["zero"] == 3 else None,
                         "staging peak MB": r["staging_peak_MB"], "gathered peak MB": r["gathered_peak_MB"],
                         "step s": r["step_s"], "gathers hidden": r.get("gather_hidden"), "check": r.get("correct")})
    return sorted(rows, key=lambda r: (r["ZeRO"], r["ranks"])), runs


MEMORY_TEXT = (
    "What one rank keeps between steps for SmolLM2-135M full fine-tuning in fp32 (AdamW), by ZeRO stage, "
    "at 1, 2 and 4 ranks on this host (`bench_memory`, 1 thread per rank): bytes of the tensors' storage "
    "(this CPU build has no allocator statistics), the largest over ranks. `vs 1 rank` divides by the same "
    "stage's bytes on one rank; `ideal` is 1/N for ZeRO 3, which shards all three. Staging and gathered "
    "peaks are transient inside a step (ZeRO 2/3's gradient buckets, ZeRO 3's gathered layers). "
    "`gathers hidden` = 1 − (seconds the last ZeRO-3 step waited on its gathers) / (the same gathers back to "
    "back, without compute): the share of the gathers that the next layer's prefetch hid behind compute, on "
    "the MPI backend's progress thread. With more ranks than cores (4 ranks here) ranks also wait for each "
    "other inside the gathers, which counts as not hidden.")


def memory_section(results, goals):
    rows, runs = memory_rows(results)
    if not rows:
        return "## memory per rank\n\n_not run: its results files are missing._\n\n"
    for r in rows:
        if r["ZeRO"] == 3 and r["ranks"] in (2, 4):
            goals.add("memory: ZeRO-3 bytes per rank at np %d / np 1 (at most)" % r["ranks"], r["vs 1 rank"],
                      0.55 if r["ranks"] == 2 else 0.3, False, data=runs.get(r["ranks"]))
    text = "## memory per rank\n\n%s\n\n%s\n\n" % (MEMORY_TEXT, meta_line(runs[1]))
    text += md_table(rows) + "\n"
    two = runs.get(2)
    if two:
        s = two["summary"]
        text += "ZeRO 3 against ZeRO 0 at 2 ranks: step %.3f s against %.3f s (%.2fx).\n\n" % (
            s["zero3_step_s"], s["zero0_step_s"], s["zero3_step_s"] / s["zero0_step_s"])
    text += "### modelled: the largest model whose full fine-tune fits one 80 GB GPU\n\n```\n"
    text += alpha_beta.ZERO_MODEL_DOC.strip() + "\n```\n\n"
    text += md_table(alpha_beta.fit_table()) + "\n"
    text += "### modelled: 7B and 70B full fine-tuning, ZeRO 2 against ZeRO 3\n\n"
    pred = []
    for name, preds in alpha_beta.zero_table(0.4, 0.8).items():
        for r in preds:
            pred.append({"model": name, "GPUs": r["gpus"], "ZeRO": r["zero"], "memory GB per GPU": r["memory_gb"],
                         "fits 80 GB": r["memory_gb"] <= 80, "compute ms": 1e3 * r["compute_s"],
                         "communication ms": 1e3 * r["comm_s"], "step ms": 1e3 * r["step_s"],
                         "efficiency": r["efficiency"]})
    text += ("MFU u = 0.4 and hidden share h = 0.8 assumed (not measured: no GPU was lent); 8192 tokens per GPU "
             "per step, activation checkpointing on.\n\n")
    return text + md_table(pred) + "\n"


def gpu_section(gpu):
    """The GPU section from scripts/gpu_check.sh's gpu_check.json."""
    if not gpu:
        return "## GPU\n\n" + GPU_NOT_MEASURED
    text = "## GPU\n\n"
    text += "`scripts/gpu_check.sh` (%s mode), %s. %s\n\n" % (
        gpu.get("mode"), gpu.get("date"), "All checks passed." if gpu.get("ok") else "**Some checks failed.**")
    if gpu.get("versions"):
        text += "```\n" + "\n".join(gpu["versions"]) + "\n```\n\n"
    train = []
    checks = []
    for step in gpu.get("steps", []):
        detail = step.get("detail") or {}
        if step["name"].startswith("train-") and "tokens_per_s" in detail:
            row = {"run": step["name"][len("train-"):], "status": step["status"], "steps": detail.get("steps")}
            for key in ("tokens_per_s", "mfu", "peak_memory_gb", "loss_first", "loss_last"):
                row[key] = detail.get(key)
            train.append(row)
        else:
            shown = {k: v for k, v in detail.items() if not isinstance(v, (list, dict))}
            checks.append({"check": step["name"], "status": step["status"], "seconds": step.get("seconds"),
                           "detail": ", ".join("%s %s" % (k, fmt(v)) for k, v in shown.items())})
    if train:
        text += ("### bf16 training, random ~1.07B Llama, one device\n\n"
                 "tokens_per_s: median over the last three quarters of the steps; mfu: model FLOPs over the "
                 "GPU's dense bf16 peak; peak_memory_gb: the peak of libtorch's caching allocator "
                 "(max_memory_allocated).\n\n" + md_table(train) + "\n")
    if checks:
        text += "### checks\n\n" + md_table(checks) + "\n"
    return text


def eval_section(data, goals):
    if data:
        goals.add("eval: generation examples/s / the same command at bd6c193 (demo's pre-trained eval)",
                  data["summary"].get("speedup_vs_reference"), 2.0, data=data)
    return section(data, "eval throughput",
                   "The evaluator's generation on the demo's test rows: `dfar eval` of the pre-trained SmolLM2-135M "
                   "exactly as step 1/5 of `make demo` runs it (128 rows, objective lr, up to 32 new tokens, 2 "
                   "ranks x 1 thread, dtype auto). The reference is a figure, not a same-run baseline: the same "
                   "command at commit bd6c193 on this machine.")


def threads_section(data, step, goals):
    """dfar's OpenMP wait policy against the other one, per dtype (the LoRA step)."""
    if not data:
        return "## threads\n\n_not run: its results file is missing._\n\n"
    picked = rows_by_case(step)
    rows = []
    by_case = {}
    for r in data["rows"]:
        by_case.setdefault(r["case"], []).append(r)
    policies = data["meta"].get("omp_wait_policy", "")
    for case, runs in by_case.items():
        if len(runs) != 2 or case not in picked:
            continue
        passive, default = runs  # run.sh merges the PASSIVE runs first.
        mine = picked[case]
        rows.append({"case": case, "PASSIVE step_ms": passive["step_ms"], "libgomp default step_ms":
                     default["step_ms"], "default / PASSIVE time": default["step_ms"] / passive["step_ms"],
                     "dfar's pick (step table) step_ms": mine["step_ms"]})
        best = min(passive["step_ms"], default["step_ms"])
        goals.add("threads: %s step, fastest policy's time / dfar's pick's time" % case, best / mine["step_ms"],
                  0.9, data=(step, data))
    text = ("OpenMP's wait policy, which dfar picks per dtype and fp32 GEMM library at start-up "
            "(src/runtime/thread_policy.cpp; a user's `OMP_WAIT_POLICY` wins): the LoRA step of `step` again, "
            "once with `OMP_WAIT_POLICY=PASSIVE` and once with libgomp's default (`DFAR_THREAD_POLICY=off`). "
            "The goal row asks that dfar's pick be within 10%% of the faster of the two; on this shared 2-core "
            "machine runs minutes apart can differ by more than that, which is why the pairs run back to back in one "
            "suite.\n\n%s\n\nPolicies in force: `%s`" % (meta_line(data), policies))
    return "## threads\n\n" + text + "\n\n" + (md_table(rows) if rows else "_no pairs_\n") + "\n"


HISTORY = """## History (not measured by this run)

The previous suite (commit 0e66dbd, 2026-12-01) compared dfar's libtorch 1.13 build with baselines on Debian's
torch 1.13 and transformers 4.44.2 + peft 0.12.0, under libgomp's default wait policy on both sides. Its
headline figures, kept for comparison only:

| figure (torch 1.13, transformers 4.44.2, peft 0.12.0; AMD EPYC, avx2 avx512f avx512_bf16) | measured |
|---|---|
| step: SmolLM2 fp32, dfar time / Python eager time | 0.934 |
| step: SmolLM2 bf16, dfar time / Python eager time | 0.789 |
| step: SmolLM2 LoRA fp32, dfar tokens/s / HF+peft tokens/s | 0.830 |
| step: SmolLM2 LoRA bf16, dfar tokens/s / HF+peft tokens/s | 1.467 |
| generate: dfar tokens/s / HF generate tokens/s (fp32, batch 1) | 1.032 |

"""


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", default="benchmarks/results")
    ap.add_argument("--out", default="docs/benchmarks.md")
    ap.add_argument("--suite-seconds", type=int, default=0)
    ap.add_argument("--failed", default="")
    ap.add_argument("--gpu-only", metavar="GPU_CHECK_JSON",
                    help="print only the GPU section rendered from this gpu_check.json, write nothing")
    args = ap.parse_args()
    if args.gpu_only:
        with open(args.gpu_only) as f:
            sys.stdout.write(gpu_section(json.load(f)))
        return
    R = args.results
    d = {n: load(R, n) for n in ("allreduce", "gradsync", "step", "step_eager", "step_hf_peft", "ckpt", "generate",
                                 "generate_hf", "attention", "attention_torch2.11", "gpu_check",
                                 "eval_throughput", "threads")}
    goals = Goals()
    body = ""

    # allreduce
    if d["allreduce"]:
        plot_allreduce(d["allreduce"], os.path.join(R, "allreduce.png"))
        big = [r for r in d["allreduce"]["rows"] if r["bytes"] >= 1 << 20]
        ratios = sorted(r["dfar/mpi"] for r in big)
        goals.add("all-reduce: dfar / raw MPI bandwidth, median over sizes ≥ 1 MB", ratios[len(ratios) // 2], 0.95,
                  data=d["allreduce"])
    body += section(d["allreduce"], "allreduce",
                    "dfar's Communicator (MPI backend, progress thread) against a raw `MPI_Allreduce` of the "
                    "same buffer in the same run, 2 ranks on this host; busbw = algbw·2(n−1)/n as in "
                    "nccl-tests. GB/s.\n\n![allreduce](../benchmarks/results/allreduce.png)")

    # gradsync
    if d["gradsync"]:
        s = d["gradsync"]["summary"]
        goals.add("gradsync: raw all-reduce time / dfar bucketed sync time (default bucket)",
                  s.get("ratio_at_default"), 0.95, data=d["gradsync"])
    body += section(d["gradsync"], "gradsync",
                    "One step's gradient synchronisation of real SmolLM2-135M full gradients (fp32) through "
                    "dfar's bucketer, per bucket size, against one raw `MPI_Allreduce` of the same bytes; "
                    "and how much of it backward hides. 2 ranks, 1 thread each.")
    if d["gradsync"]:
        body += "Summary: `%s`\n\n" % json.dumps(d["gradsync"]["summary"])

    # step
    dfar_step, eager, peft = rows_by_case(d["step"]), rows_by_case(d["step_eager"]), rows_by_case(d["step_hf_peft"])
    compare = []
    for case, r in dfar_step.items():
        for label, other in (("python eager", eager), ("HF transformers+peft", peft)):
            if case in other:
                o = other[case]
                compare.append({"case": case, "baseline": label, "dfar tokens/s": r["tokens_per_s"],
                                "baseline tokens/s": o["tokens_per_s"],
                                "dfar time / baseline time": o["tokens_per_s"] / r["tokens_per_s"],
                                "dfar loss_first": r["loss_first"], "baseline loss_first": o["loss_first"]})
    auto_dtype = "bf16" if native_bf16(d["step"]) else "fp32"
    both = (d["step"], d["step_eager"])
    for c in compare:
        if c["baseline"] == "python eager" and c["case"] == "tiny-full-fp32":
            goals.add("step: tiny Llama, dfar time / Python eager time", c["dfar time / baseline time"], 0.8, False,
                      data=both)
        if c["baseline"] == "python eager" and c["case"].startswith("smollm2-full"):
            dt = c["case"].split("-")[-1]
            picked = dt == auto_dtype
            goals.add("step: SmolLM2 full %s, dfar time / Python eager time%s" % (
                dt, " (the dtype auto picks here)" if picked else " (not auto's pick here; 1.0 is our bar)"),
                c["dfar time / baseline time"], 0.8 if picked else 1.0, False, data=both)
        if c["baseline"].startswith("HF") and c["case"].startswith("smollm2-lora"):
            rows = "DFAR rows: dfar packs, HF pads" if "-dfar-" in c["case"] else "the synthetic batch"
            goals.add("step: SmolLM2 LoRA %s, %s, dfar tokens/s / HF+peft tokens/s" % (c["case"].split("-")[-1], rows),
                      1 / c["dfar time / baseline time"], 2.0, data=(d["step"], d["step_hf_peft"]))
    peers = (d["step_hf_peft"] or {}).get("meta", {})
    text = ("Training tokens/s on this CPU with the same batch (deterministic ids, loss on the second half of "
            "each row), sequence length, threads and precision on both sides. dfar runs its trainer's step "
            "(flat buffers, bucketed sync, clip, AdamW) on the libtorch named in its metadata line, each case "
            "in its own process under the OpenMP wait policy dfar picks for its dtype; Python eager runs the same "
            "math in PyTorch %s (the same libtorch); HF runs transformers %s + peft %s LoRA as the paper's "
            "stack does, under libgomp's default wait policy (what a Python user gets). `loss_first` must agree "
            "across sides (same weights, same batch)." % (
                peers.get("torch", "?"), peers.get("transformers", "?"), peers.get("peft", "?")))
    body += section(d["step"], "step", text)
    if compare:
        body += "### dfar against the baselines\n\n" + md_table(compare) + "\n"
    for n in ("step_eager", "step_hf_peft"):
        if d[n]:
            body += "### %s\n\n%s\n\n" % (n, meta_line(d[n])) + md_table(d[n]["rows"], d[n].get("columns")) + "\n"

    # scaling
    meas = scaling_measurements(R)
    step_rows = dfar_step
    shares = [r.get("share_of_peak") for k, r in step_rows.items() if "bf16" in k and r.get("share_of_peak")]
    mfu = max(shares) if shares else 0.4
    hidden = (d["gradsync"] or {}).get("summary", {}).get("hidden_fraction", 0.5) if d["gradsync"] else 0.5
    model = alpha_beta.table(mfu, hidden)
    plot_scaling(model, [(m["case"], m["weak efficiency"]) for m in meas], os.path.join(R, "scaling.png"))
    for m in meas:
        goals.add("scaling 1→2 ranks, weak efficiency (%s; 0.9 is our bar, the issue sets none)" % m["case"],
                  m["weak efficiency"], 0.9, data=load(R, "scaling-%s-np2-b2" % m["case"]))
    body += "## scaling\n\n### measured: 1 → 2 ranks on this host (1 thread per rank)\n\n"
    body += ("Weak: the same per-rank batch (2×128) on 1 and 2 ranks, efficiency = t1/t2. Strong: a global "
             "batch of 4×128 on 1 rank vs 2×128 per rank on 2, efficiency = t1/(2·t2).\n\n")
    body += md_table(meas) if meas else "_not run_\n"
    body += "\n### modelled: 8, 64 and 512 GPUs\n\n```\n" + alpha_beta.__doc__.strip() + "\n```\n\n"
    body += "Inputs of this run: u = %.3f (dfar's best bf16 share of peak in `step`), h = %.3f (gradsync).\n\n" % (
        mfu, hidden)
    pred = []
    for name, rows in model.items():
        for r in rows:
            if r["gpus"] in (8, 64, 512):
                pred.append({"setup": name, "GPUs": r["gpus"], "compute ms": 1e3 * r["compute_s"],
                             "all-reduce ms": 1e3 * r["comm_s"], "step ms": 1e3 * r["step_s"],
                             "efficiency": r["efficiency"]})
    body += md_table(pred) + "\n![scaling](../benchmarks/results/scaling.png)\n\n"

    # ckpt
    if d["ckpt"]:
        s = d["ckpt"]["summary"]
        goals.add("ckpt: dfar save GB/s / dd GB/s (same bytes)", s.get("save_vs_dd"), 0.7, data=d["ckpt"])
    body += section(d["ckpt"], "ckpt",
                    "Save and load of SmolLM2-135M full weights + AdamW state (fp32, ZeRO-1 shards), 2 ranks, "
                    "against dd and torch::save/torch::load of the same bytes in the same run. GB/s per rank.")

    # generate
    if d["generate"]:
        rows = d["generate"]["rows"]
        sp = [r.get("speedup") for r in rows if r.get("speedup") and r.get("method", "").startswith("kv")]
        if not sp:
            sp = [max(r.get("speedup", 0) for r in rows)]
        goals.add("generate: KV cache / recompute tokens/s, 128 tokens", sp[0], 5.0, data=d["generate"])
        goals.add("generate: KV-cache decode tokens/s / memory-bandwidth bound (fp32, batch 1)",
                  d["generate"]["summary"].get("kv_cache_share_of_bound"), 0.5, data=d["generate"])
    body += section(d["generate"], "generate",
                    "Greedy decoding of 128 new tokens from SmolLM2-135M (fp32, batch 1, 2 threads): dfar's KV "
                    "cache against recomputing the whole prefix each token.")
    if d["generate_hf"] and d["generate"]:
        g = [r for r in d["generate"]["rows"] if r.get("method", "").startswith("kv")]
        h = d["generate_hf"]["rows"][0]
        if g:
            goals.add("generate: dfar tokens/s / HF generate tokens/s", g[0]["tokens_per_s"] / h["tokens_per_s"], 1.0,
                      data=(d["generate"], d["generate_hf"]))
    body += section(d["generate_hf"], "generate: HF transformers `generate`", "The same prompt ids, model and threads.")

    body += eval_section(d["eval_throughput"], goals)
    body += threads_section(d["threads"], d["step"], goals)
    body += memory_section(R, goals)
    body += attention_section(d["attention"], d["attention_torch2.11"])
    body += gpu_section(d["gpu_check"])
    body += HISTORY

    failed = [f for f in args.failed.split() if f]
    head = ["# Benchmarks", "",
            "Generated by `make bench` (benchmarks/run.sh → benchmarks/report.py); do not edit by hand. "
            "Every figure is measured in the same run as its baseline, on the machine named in each section's "
            "metadata line; the suite took %d s.%s" % (
                args.suite_seconds, " Failed: " + ", ".join(failed) + "." if failed else ""),
            "", CPU_KINDS_NOTE, "", "## Headline figures against the goals", "", md_table(goals.rows)]
    with open(args.out + ".tmp", "w") as f:
        f.write("\n".join(head) + "\n" + body)
    os.replace(args.out + ".tmp", args.out)
    print("report: wrote %s (%d headline figures)" % (args.out, len(goals.rows)))


if __name__ == "__main__":
    main()
