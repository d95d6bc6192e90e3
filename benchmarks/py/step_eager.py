"""Python-eager baseline of dfar's training-step benchmark (benchmarks/step).

Measures one full fine-tuning optimizer step of a Llama-family model written in
plain PyTorch eager (llama_eager.py: the same math as dfar's C++ decoder, on
the same libtorch as the dfar build it is compared with: make bench runs the
torch 2.11 wheel against dfar's 2.11 build), so bench_step's numbers can be compared with what a
good engineer gets from Python eager on the same machine and threads. The
difference is then dfar's own work (flat parameters, fused kernels, less
dispatch), not a different model or a different loss.

Step (identical to the spec bench_step.cpp follows): zero grads, forward, loss
(mean cross-entropy over supervised positions; logits only at those
positions), backward, clip the global grad norm to 1.0, AdamW (betas
0.9/0.999, eps 1e-8, weight decay 0; torch.optim.AdamW(foreach=True)).
bf16 is standard manual mixed precision: bf16 parameters, fp32 master copies
with fp32 AdamW state; after backward the grads are copied to the masters,
clipped there, stepped, and the masters are copied back to bf16.

Batch: B x T ids[b][t] = (17 + 1009 b + 31 t + 7 ((b t) mod 13)) mod vocab;
pre-shifted labels label[b][t] = ids[b][t+1] for T//2 <= t < T-1, else -100.

Cases: tiny-full-fp32 (B4 T128, lr 1e-3, 3 warm-up + 30 timed steps),
smollm2-full-fp32 (B4 T192, lr 1e-5, 1 + 2), smollm2-full-bf16 (1 + 3).
step_ms is the median of the timed steps (time.perf_counter);
tokens_per_s = B*T / step. loss_first is the loss of the first (warm-up) step,
before any update; loss_last that of the last timed step.
Correctness: with --reference (bench_step's JSON), |loss_first - ref| <=
1e-3 (1 + |ref|) for fp32 cases, 2e-2 (1 + |ref|) for bf16; without it, the
losses are finite and loss_last < loss_first.

--self-check compares llama_eager's loss and gradients with transformers'
LlamaForCausalLM on the same weights and batch (tiny model; SmolLM2 too when
its directory exists) and fails if the losses differ by more than 1e-5
(tiny) / 1e-4 (SmolLM2, 30 layers) or the gradients by more than 1e-3
(relative L2 over all parameters). It runs instead of the benchmark.

Example:
  /usr/bin/python3 benchmarks/py/step_eager.py --models build/bench-models \\
      --reference build/bench/step.json --json build/bench/step_eager.json
"""
import json
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Report, base_parser  # noqa: E402
import llama_eager  # noqa: E402

IGNORE_INDEX = -100

# name: (model dir, batch, seq, lr, warm-up, timed, dtype)
CASES = {
    "tiny-full-fp32": ("tiny-llama", 4, 128, 1e-3, 3, 30, torch.float32),
    "smollm2-full-fp32": ("smollm2", 4, 192, 1e-5, 1, 2, torch.float32),
    "smollm2-full-bf16": ("smollm2", 4, 192, 1e-5, 1, 3, torch.bfloat16),
}

COLUMNS = [("case", 20, 0), ("batch", 5, 0), ("seq", 5, 0), ("step_ms", 10, 2),
           ("tokens_per_s", 12, 1), ("loss_first", 11, 6), ("loss_last", 11, 6)]


# ---- shared with step_hf_peft.py -------------------------------------------

def make_batch(B, T, vocab):
    """The spec's deterministic batch: (ids, pre-shifted labels), int64 (B, T)."""
    b = torch.arange(B, dtype=torch.int64)[:, None]
    t = torch.arange(T, dtype=torch.int64)[None, :]
    ids = (17 + 1009 * b + 31 * t + 7 * ((b * t) % 13)) % vocab
    labels = torch.full((B, T), IGNORE_INDEX, dtype=torch.int64)
    labels[:, T // 2:T - 1] = ids[:, T // 2 + 1:T]
    return ids, labels


def hf_labels(ids):
    """Unshifted labels for HF models (which predict labels[:, s] from position
    s-1): labels_hf[b][s] = ids[b][s] for s > T//2, else -100. HF's target for
    position t is labels_hf[b][t+1] = ids[b][t+1] exactly when T//2 <= t < T-1,
    i.e. the same supervised targets as make_batch's pre-shifted labels."""
    T = ids.shape[1]
    out = torch.full_like(ids, IGNORE_INDEX)
    out[:, T // 2 + 1:] = ids[:, T // 2 + 1:]
    return out


def load_reference(path):
    """case -> loss_first from a C++ benchmark's --json output (None: no file)."""
    if not path:
        return None
    with open(path) as f:
        data = json.load(f)
    return {r["case"]: r["loss_first"] for r in data.get("rows", []) if "case" in r and "loss_first" in r}


def check_losses(report, case, losses, ref, bf16):
    """The spec's correctness rule; notes why a row fails."""
    first, last = losses[0], losses[-1]
    finite = all(math.isfinite(x) for x in losses)
    if ref is not None and case in ref:
        r = ref[case]
        tol = (2e-2 if bf16 else 1e-3) * (1 + abs(r))
        ok = finite and abs(first - r) <= tol
        if not ok:
            report.note("%s: loss_first %.6f vs reference %.6f (tol %.2g)" % (case, first, r, tol))
        return ok
    if ref is not None:
        report.note("%s: not in the reference, checking loss_last < loss_first instead" % case)
    ok = finite and last < first
    if not ok:
        report.note("%s: losses not finite or not decreasing: %s" % (case, losses))
    return ok


def add_common_args(p, cases):
    p.add_argument("--models", default=os.environ.get("DFAR_BENCH_MODELS", "build/bench-models"),
                   help="directory holding tiny-llama/ and smollm2/ (HF format)")
    p.add_argument("--case", choices=sorted(cases), action="append",
                   help="run only this case (repeatable); default: all")
    p.add_argument("--batch", type=int, help="override B")
    p.add_argument("--seq", type=int, help="override T")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--reference", help="the C++ benchmark's --json output to check loss_first against")


def _cpu_times():
    """(idle, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v)  # idle + iowait, total


def _own_cpu_s():
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class LoadMonitor:
    """How busy the machine is. Other work on the cores makes OpenMP threads
    wait for descheduled peers, so step times can grow several-fold; these
    numbers tell a reader whether a run's timings mean anything.

    start(): meta loadavg, and cpu_busy_before = CPU utilisation over the
    `window_s` seconds before measuring (the load average also counts recently
    finished runs, so it is not used for the warning).
    finish(): summary cpu_other_during_run = CPU time used by other processes
    while this script ran, as a share of all CPUs; a note when it is high."""

    LIMIT = 0.25

    def start(self, report, window_s=1.0):
        report.add_meta("loadavg", "%.2f %.2f %.2f" % os.getloadavg())
        try:
            idle0, total0 = _cpu_times()
            time.sleep(window_s)
            self.idle, self.total = _cpu_times()
        except OSError:
            self.total = None
            return self
        self.own = _own_cpu_s()
        busy = 1.0 - (self.idle - idle0) / max(1, self.total - total0)
        report.add_meta("cpu_busy_before", "%.0f%%" % (100 * busy))
        if busy > self.LIMIT:
            report.add_meta("load_warning", "other work used %.0f%% of the CPUs just before the run: "
                            "timings are not representative" % (100 * busy))
        return self

    def finish(self, report):
        if self.total is None:
            return
        idle, total = _cpu_times()
        hz = os.sysconf("SC_CLK_TCK")
        busy_s = ((total - self.total) - (idle - self.idle)) / hz
        other = max(0.0, busy_s - (_own_cpu_s() - self.own))
        share = other / max(1e-9, (total - self.total) / hz)
        report.add_summary("cpu_other_during_run", "%.0f%%" % (100 * share))
        if share > self.LIMIT:
            report.note("other processes used %.0f%% of the CPUs during the run: "
                        "timings are not representative" % (100 * share))


def median_ms(times):
    return statistics.median(times) * 1e3


# ---- the step ---------------------------------------------------------------

class Trainer:
    """fp32: AdamW on the parameters. bf16: bf16 parameters, fp32 masters."""

    def __init__(self, model, lr, dtype):
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.bf16 = dtype == torch.bfloat16
        if self.bf16:
            self.masters = [p.detach().float().clone() for p in self.params]
            for m in self.masters:
                m.grad = torch.zeros_like(m)
            opt_params = self.masters
        else:
            opt_params = self.params
        self.opt = torch.optim.AdamW(opt_params, lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                     weight_decay=0.0, foreach=True)

    def step(self, ids, labels):
        for p in self.params:
            p.grad = None
        loss = self.model.loss(ids, labels)
        loss.backward()
        if self.bf16:
            with torch.no_grad():
                for m, p in zip(self.masters, self.params):
                    m.grad.copy_(p.grad)
            torch.nn.utils.clip_grad_norm_(self.masters, 1.0)
            self.opt.step()
            with torch.no_grad():
                for m, p in zip(self.masters, self.params):
                    p.copy_(m)
        else:
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.opt.step()
        return loss.item()


def run_case(report, args, name, ref):
    sub, B, T, lr, warm, timed, dtype = CASES[name]
    B = args.batch or B
    T = args.seq or T
    if args.quick:
        warm, timed = 1, min(timed, 3 if sub == "tiny-llama" else 1)
    model_dir = os.path.join(args.models, sub)
    if not os.path.isdir(model_dir):
        report.note("%s: skipped, %s not found" % (name, model_dir))
        return
    torch.manual_seed(0)
    model = llama_eager.load_model(model_dir, dtype)
    model.train()
    ids, labels = make_batch(B, T, model.cfg.vocab_size)
    trainer = Trainer(model, lr, dtype)
    losses, times = [], []
    for i in range(warm + timed):
        t0 = time.perf_counter()
        losses.append(trainer.step(ids, labels))
        dt = time.perf_counter() - t0
        if i >= warm:
            times.append(dt)
    ms = median_ms(times)
    ok = check_losses(report, name, [losses[0], losses[-1]], ref, dtype == torch.bfloat16)
    report.row([name, B, T, ms, B * T / (ms / 1e3), losses[0], losses[-1]], ok)


# ---- --self-check -------------------------------------------------------------

def self_check(report, args):
    """llama_eager vs transformers.LlamaForCausalLM: loss and grads, same weights and batch."""
    from transformers import LlamaForCausalLM
    report.begin([("model", 12, 0), ("batch", 5, 0), ("seq", 5, 0), ("loss_eager", 11, 6),
                  ("loss_hf", 11, 6), ("abs_diff", 10, 8), ("grad_rel_diff", 13, 8)])
    for sub, B, T, tol in (("tiny-llama", 4, 128, 1e-5), ("smollm2", 4, 192, 1e-4)):
        model_dir = os.path.join(args.models, sub)
        if not os.path.isdir(model_dir):
            report.note("self-check: %s not found%s" % (model_dir, "" if sub == "smollm2" else " (FAIL)"))
            if sub != "smollm2":
                report.failures += 1
            continue
        B, T = args.batch or B, args.seq or T
        ours = llama_eager.load_model(model_dir)
        hf = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                              attn_implementation="eager")
        hf.config.use_cache = False
        ids, labels = make_batch(B, T, ours.cfg.vocab_size)
        l_ours = ours.loss(ids, labels)
        l_ours.backward()
        l_hf = hf(input_ids=ids, labels=hf_labels(ids), use_cache=False).loss
        l_hf.backward()
        g_ours = dict(ours.named_parameters())
        num = den = 0.0
        for n, p in hf.named_parameters():
            if p.grad is None:
                continue
            if n not in g_ours:  # named_parameters() lists a tied lm_head once, as the embedding
                raise KeyError("llama_eager has no parameter " + n)
            q = g_ours[n]
            num += (p.grad - q.grad).pow(2).sum().item()
            den += p.grad.pow(2).sum().item()
        grad_rel = math.sqrt(num / max(den, 1e-30))
        diff = abs(l_ours.item() - l_hf.item())
        ok = diff <= tol and grad_rel <= 1e-3
        report.row([sub, B, T, l_ours.item(), l_hf.item(), diff, grad_rel], ok)
        del ours, hf


def run_all_cases(report, args, cases, run_case, load):
    """Runs the selected cases (checked against --reference) and exits with the report's status."""
    ref = load_reference(args.reference)
    if args.reference:
        report.add_meta("reference", os.path.abspath(args.reference))
    report.begin(COLUMNS)
    for name in (args.case or list(cases)):
        run_case(report, args, name, ref)
    load.finish(report)
    sys.exit(report.finish())


def main():
    p = base_parser(__doc__.split("\n")[0])
    add_common_args(p, CASES)
    p.add_argument("--self-check", action="store_true",
                   help="check llama_eager's loss/grads against transformers instead of benchmarking")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    report = Report("step-eager-selfcheck" if args.self_check else "step-eager", args)
    report.add_meta("torch", torch.__version__)
    report.add_meta("threads", torch.get_num_threads())
    report.add_meta("models", os.path.abspath(args.models))
    report.add_meta("attention", llama_eager.attention_impl())
    report.add_meta("optimizer", "torch.optim.AdamW(foreach=True) + clip_grad_norm_(1.0)")
    load = LoadMonitor().start(report)
    if args.self_check:
        import transformers
        report.add_meta("transformers", transformers.__version__)
        self_check(report, args)
        sys.exit(report.finish())
    run_all_cases(report, args, CASES, run_case, load)


if __name__ == "__main__":
    main()
