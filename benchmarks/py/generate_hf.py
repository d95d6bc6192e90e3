"""HF transformers baseline of dfar's generation benchmark (benchmarks/generate).

Measures greedy decoding with Hugging Face `generate` on SmolLM2-135M (fp32,
batch 1, KV cache on, exactly 128 new tokens, 2 threads by default): the
Python stack dfar's C++ sampler is compared with, on the same machine. It also
checks that both produce the same text: with --reference (the C++ generate
benchmark's JSON, whose summary holds `prompt_ids` and `generated_ids`) it
decodes from the same prompt ids and reports the length of the common prefix
of the two generated sequences.

  model = AutoModelForCausalLM.from_pretrained(models/smollm2, fp32).eval()
  model.generate(prompt, do_sample=False, num_beams=1, min_new_tokens=128,
                 max_new_tokens=128, use_cache=True)

An explicit GenerationConfig is used so the model directory's
generation_config.json (temperature, repetition penalty, ...) cannot change
the decoding. min_new_tokens suppresses EOS until 128 tokens are out. One
short generate (8 tokens) warms up first; `seconds` is the median of --reps
timed generates (time.perf_counter, default 1) and includes the prefill.

Without --reference the prompt is the spec's text, tokenized with the model
directory's tokenizer (add_special_tokens=False, so tokenizers that would
prepend BOS and those that would not agree), or fixed ids if the directory
has no tokenizer; matching_prefix is then -1.

Columns: method (hf-generate), new_tokens, seconds, tokens_per_s,
matching_prefix. Correctness: 128 new tokens and, with a reference,
matching_prefix >= 120.

Example:
  /usr/bin/python3 benchmarks/py/generate_hf.py --models build/bench-models \\
      --reference build/bench/generate.json --json build/bench/generate_hf.json
"""
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Report, base_parser  # noqa: E402
from step_eager import LoadMonitor  # noqa: E402

NEW_TOKENS = 128
MIN_MATCH = 120
PROMPT = ("### Statement: I told my friend the truth even though it hurt her feelings.\n"
          "### Question: Is this ethical or unethical? Explain why.\n### Answer:")


def fixed_prompt_ids(vocab, n=32):
    return [(17 + 31 * t + 7 * (t % 13)) % vocab for t in range(n)]


def prompt_from_tokenizer(model_dir):
    """(ids, tokenizer or None)."""
    if not any(os.path.exists(os.path.join(model_dir, f))
               for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        return None, None
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    return tok(PROMPT, add_special_tokens=False)["input_ids"], tok


def common_prefix(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def main():
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("--models", default=os.environ.get("DFAR_BENCH_MODELS", "build/bench-models"),
                   help="directory holding smollm2/ (HF format)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--reps", type=int, default=1, help="timed generates (median reported)")
    p.add_argument("--reference", help="the C++ generate benchmark's --json output")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import transformers
    from transformers import AutoModelForCausalLM, GenerationConfig

    report = Report("generate-hf", args)
    report.add_meta("torch", torch.__version__)
    report.add_meta("threads", torch.get_num_threads())
    report.add_meta("transformers", transformers.__version__)
    model_dir = os.path.join(args.models, "smollm2")
    report.add_meta("model", os.path.abspath(model_dir))
    load = LoadMonitor().start(report)

    ref_gen = None
    tok = None
    if args.reference:
        with open(args.reference) as f:
            summary = json.load(f).get("summary", {})
        prompt_ids = [int(x) for x in summary["prompt_ids"]]
        ref_gen = [int(x) for x in summary["generated_ids"]]
        if len(ref_gen) > NEW_TOKENS and ref_gen[:len(prompt_ids)] == prompt_ids:
            ref_gen = ref_gen[len(prompt_ids):]  # the reference included the prompt
        report.add_meta("reference", os.path.abspath(args.reference))
        report.add_meta("prompt", "reference prompt_ids")
    else:
        prompt_ids, tok = prompt_from_tokenizer(model_dir)
        report.add_meta("prompt", "spec text via the model dir's tokenizer" if prompt_ids else "fixed ids")

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    if prompt_ids is None:
        prompt_ids = fixed_prompt_ids(model.config.vocab_size)
    report.add_meta("attn_implementation", getattr(model.config, "_attn_implementation", "unknown"))
    report.add_meta("prompt_tokens", len(prompt_ids))

    eos = model.config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else eos

    def gen_config(n):
        return GenerationConfig(do_sample=False, num_beams=1, min_new_tokens=n, max_new_tokens=n,
                                use_cache=True, eos_token_id=eos, pad_token_id=pad)

    ids = torch.tensor([prompt_ids], dtype=torch.int64)
    mask = torch.ones_like(ids)
    report.begin([("method", 12, 0), ("new_tokens", 10, 0), ("seconds", 9, 3),
                  ("tokens_per_s", 12, 2), ("matching_prefix", 15, 0)])
    with torch.inference_mode():
        model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_config(8))
        times = []
        for _ in range(max(1, args.reps)):
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_config(NEW_TOKENS))
            times.append(time.perf_counter() - t0)
    gen = out[0, ids.shape[1]:].tolist()
    secs = statistics.median(times)
    match = common_prefix(gen, ref_gen) if ref_gen is not None else -1
    ok = len(gen) == NEW_TOKENS and (ref_gen is None or match >= MIN_MATCH)
    if ref_gen is not None and not ok:
        report.note("generated tokens differ from the reference after %d of %d" % (match, len(ref_gen)))
    report.row(["hf-generate", len(gen), secs, len(gen) / secs, match], ok)
    load.finish(report)
    report.add_summary("prompt_ids", prompt_ids)
    report.add_summary("generated_ids", gen)
    if tok is None:
        try:
            tok = prompt_from_tokenizer(model_dir)[1]
        except Exception as e:  # decoding is informational only
            report.note("no tokenizer for generated_text: %s" % e)
    if tok is not None:
        report.add_summary("generated_text", tok.decode(gen))
    sys.exit(report.finish())


if __name__ == "__main__":
    main()
