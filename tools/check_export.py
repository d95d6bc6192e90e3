#!/usr/bin/env python3
"""Loads a dfar export (dfar::ExportHfModel) with transformers and compares its
logits with dfar's.

    DFAR_EXPORT_DUMP=/tmp/exp ./build/bin/dfar_torch_tests --gtest_filter='Export*'
    /usr/bin/python3 tools/check_export.py /tmp/exp/tiny --dfar-logits /tmp/exp/tiny.json
    /usr/bin/python3 tools/check_export.py /tmp/exp/smollm2 --dfar-logits /tmp/exp/smollm2.json

The dump (written by tests/model/export_test.cpp) holds the prompt, the ids
dfar fed the model (BOS included when the tokenizer adds it), the ids of the
prompt text alone, and dfar's logits for every position. Without
--dfar-logits, the prompt is tokenized by the exported tokenizer and the
logits are only printed.

Measured (Debian python3-torch 1.13.1, transformers 4.44.2, tokenizers 0.19.1,
fp32, eager attention, CPU), max |transformers - dfar| over all positions:
    tiny-spm with merged random LoRA  (8 ids x 512 vocab):    0 to 8.9e-08 (two builds)
    SmolLM2-135M-Instruct from GGUF   (14 ids x 49152 vocab): 4.1e-05
(SmolLM2's logits reach 24 after 30 layers: fp32 sums in another order.)
transformers' tokenizer, loaded from the exported SmolLM2 tokenizer.json, gave
dfar's ids for the prompt (and the golden ids for all 271 strings of
tests/fixtures/tokenizer/smollm2_golden.json); transformers converts the tiny
export's tokenizer.model only with sentencepiece and protobuf installed, which
they were not here, so its ids went unchecked.
Exit status: 0 when the difference is within --tol, 1 otherwise.
"""
import argparse
import json
import sys

import torch
import transformers


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("export_dir", help="directory written by dfar::ExportHfModel")
    p.add_argument("--prompt", help="text to run (default: the dump's prompt)")
    p.add_argument("--dfar-logits", help="JSON dump from the export test (DFAR_EXPORT_DUMP)")
    p.add_argument("--tol", type=float, default=1e-4, help="max abs logit difference accepted")
    return p.parse_args()


def load_tokenizer(export_dir):
    """The exported tokenizer, or None (with the reason) when transformers cannot load it."""
    try:
        return transformers.AutoTokenizer.from_pretrained(export_dir)
    except Exception as e:  # noqa: BLE001 - any failure just means "not checked".
        reason = " ".join(str(e).split())[:160]
        print(f"tokenizer: not loaded, ids not checked ({type(e).__name__}: {reason})")
        return None


def check_tokenizer(tok, prompt, dump):
    """True when the exported tokenizer encodes the prompt as dfar did."""
    hf_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    same = hf_ids == dump["text_ids"]
    print(f"tokenizer: {len(hf_ids)} ids, {'same as dfar' if same else 'DIFFERENT from dfar'}")
    if not same:
        print(f"  transformers: {hf_ids}\n  dfar:         {dump['text_ids']}")
    return same


def run_model(export_dir, ids):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        export_dir, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([ids], dtype=torch.long)).logits[0]


def main():
    args = parse_args()
    dump = json.load(open(args.dfar_logits)) if args.dfar_logits else None
    prompt = args.prompt if args.prompt is not None else (dump or {}).get("prompt")
    tok = load_tokenizer(args.export_dir)
    tokens_ok = True
    if dump is not None and tok is not None and prompt is not None:
        tokens_ok = check_tokenizer(tok, prompt, dump)
    if dump is not None:
        ids = dump["ids"]
    elif tok is not None and prompt is not None:
        ids = tok(prompt)["input_ids"]
    else:
        sys.exit("need --dfar-logits, or --prompt and a tokenizer transformers can load")
    logits = run_model(args.export_dir, ids)
    top = torch.topk(logits[-1], 5)
    print(f"logits: {tuple(logits.shape)}; last position top-5 ids {top.indices.tolist()}, "
          f"values {[round(v, 4) for v in top.values.tolist()]}")
    if dump is None:
        return 0
    diff = (logits - torch.tensor(dump["logits"], dtype=torch.float32)).abs().max().item()
    print(f"max |transformers - dfar| = {diff:.3e} (tol {args.tol:g})")
    return 0 if diff <= args.tol and tokens_ok else 1


if __name__ == "__main__":
    sys.exit(main())
