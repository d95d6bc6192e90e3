"""HF transformers + PEFT baseline of dfar's LoRA training-step benchmark.

Measures one LoRA optimizer step of SmolLM2-135M done the way the Python
stack the paper used does it (transformers + peft, as TRL's SFTTrainer / HF
Trainer drive it; make bench pins current versions in
benchmarks/requirements-bench.txt and runs them on the torch 2.11 wheel of
the dfar build being timed), so bench_step's smollm2-lora-* rows can be
compared with the stack dfar replaces, on the same machine, torch and threads:

  AutoModelForCausalLM.from_pretrained(models/smollm2, fp32)
  peft.get_peft_model(LoraConfig(r=64, lora_alpha=16, lora_dropout=0.0,
      target_modules=q,k,v,o,gate,up,down _proj, task_type="CAUSAL_LM"))
  model.train(), use_cache=False
  step: zero_grad, loss = model(input_ids, labels=labels_hf).loss, backward,
        clip_grad_norm_(trainable, 1.0), torch.optim.AdamW(trainable, lr 2e-4,
        betas 0.9/0.999, eps 1e-8, weight_decay 0) with torch's default
        foreach (what Trainer's adamw_torch gets).

bf16 is what Trainer(bf16=True) does on CPU: fp32 weights, the forward (and
the loss, which HF computes inside forward) under torch.autocast("cpu",
dtype=torch.bfloat16); backward and the optimizer outside it.

HF shifts labels inside the model, so it gets unshifted labels with the same
supervised targets as the spec's pre-shifted ones: labels_hf[b][s] = ids[b][s]
for s > T//2, else -100 (see step_eager.hf_labels). HF's loss is the mean over
the non-ignored targets, i.e. the spec's loss. HF computes logits at every
position; that is part of what is being measured.

Cases: smollm2-lora-fp32, smollm2-lora-bf16 (B4 T192, 1 warm-up + 3 timed
steps), on the synthetic batch; smollm2-lora-dfar-fp32, smollm2-lora-dfar-bf16
on the real DFAR examples bench_step packed into its batch (--examples, the
file its -dfar cases wrote), batched the HF Trainer way: one row each,
right-padded to the longest, attention_mask 0 on padding (dynamic padding,
as DataCollatorForSeq2Seq does), labels = ids on the target tokens. Their
tokens_per_s counts real tokens, as bench_step's does. Columns, timing and correctness as step_eager.py (the median of the
timed steps; --reference is bench_step's JSON: |loss_first - ref| <= 1e-3
(1 + |ref|) fp32, 2e-2 (1 + |ref|) bf16; else finite and decreasing losses).

Example:
  /usr/bin/python3 benchmarks/py/step_hf_peft.py --models build/bench-models \\
      --reference build/bench/step.json --json build/bench/step_hf_peft.json
"""
import contextlib
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Report, base_parser  # noqa: E402
from step_eager import (LoadMonitor, add_common_args, check_losses, hf_labels,  # noqa: E402
                        make_batch, median_ms, run_all_cases)

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# name: (model dir, batch, seq, lr, warm-up, timed, autocast bf16)
CASES = {
    "smollm2-lora-fp32": ("smollm2", 4, 192, 2e-4, 1, 3, False),
    "smollm2-lora-bf16": ("smollm2", 4, 192, 2e-4, 1, 3, True),
    "smollm2-lora-dfar-fp32": ("smollm2", 0, 0, 2e-4, 1, 3, False),
    "smollm2-lora-dfar-bf16": ("smollm2", 0, 0, 2e-4, 1, 3, True),
}


def dfar_batch(path):
    """(ids, attention_mask, labels, real tokens) of bench_step's real examples, padded to the longest."""
    with open(path) as f:
        examples = json.load(f)["examples"]
    longest = max(len(e["ids"]) for e in examples)
    ids = torch.zeros((len(examples), longest), dtype=torch.int64)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, e in enumerate(examples):
        n, p = len(e["ids"]), e["prompt_len"]
        ids[i, :n] = torch.tensor(e["ids"], dtype=torch.int64)
        mask[i, :n] = 1
        labels[i, p:n] = ids[i, p:n]  # HF shifts inside: position s-1 predicts labels[s].
    return ids, mask, labels, int(mask.sum())


def build(model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)  # LoRA A init; B starts at zero, so loss_first is the base model's
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=64, lora_alpha=16, lora_dropout=0.0,
                                             target_modules=TARGETS, task_type="CAUSAL_LM"))
    model.train()
    return model


def run_case(report, args, name, ref):
    sub, B, T, lr, warm, timed, bf16 = CASES[name]
    B = args.batch or B
    T = args.seq or T
    if args.quick:
        warm, timed = 1, 1
    model_dir = os.path.join(args.models, sub)
    if "-dfar-" in name and not (args.examples and os.path.exists(args.examples)):
        report.note("%s: skipped, no --examples file (bench_step --examples writes it)" % name)
        return
    if not os.path.isdir(model_dir):
        report.note("%s: skipped, %s not found" % (name, model_dir))
        return
    model = build(model_dir)
    report.add_summary("attn_implementation", getattr(model.config, "_attn_implementation", "unknown"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    report.add_summary("trainable_params", sum(p.numel() for p in trainable))
    opt = torch.optim.AdamW(trainable, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    mask = None
    if "-dfar-" in name:
        ids, mask, labels, tokens = dfar_batch(args.examples)
        B, T = ids.shape
    else:
        ids, _ = make_batch(B, T, model.config.vocab_size)
        labels = hf_labels(ids)
        tokens = B * T
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    losses, times = [], []
    for i in range(warm + timed):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with ctx():
            loss = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        losses.append(loss.item())
        dt = time.perf_counter() - t0
        if i >= warm:
            times.append(dt)
    ms = median_ms(times)
    ok = check_losses(report, name, [losses[0], losses[-1]], ref, bf16)
    report.row([name, B, T, ms, tokens / (ms / 1e3), losses[0], losses[-1]], ok)


def main():
    p = base_parser(__doc__.split("\n")[0])
    add_common_args(p, CASES)
    p.add_argument("--examples", help="bench_step's --examples file (the -dfar cases)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import peft
    import transformers
    report = Report("step-hf-peft", args)
    report.add_meta("torch", torch.__version__)
    report.add_meta("threads", torch.get_num_threads())
    report.add_meta("transformers", transformers.__version__)
    report.add_meta("peft", peft.__version__)
    report.add_meta("models", os.path.abspath(args.models))
    report.add_meta("optimizer", "torch.optim.AdamW(default foreach) + clip_grad_norm_(1.0)")
    load = LoadMonitor().start(report)
    run_all_cases(report, args, CASES, run_case, load)


if __name__ == "__main__":
    main()
