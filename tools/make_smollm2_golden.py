#!/usr/bin/env python3
"""Writes tests/fixtures/models/smollm2_golden.safetensors: what Hugging Face
`transformers` computes for the real SmolLM2-135M-Instruct GGUF (the one
scripts/fetch_model.sh caches) on one DFAR prompt, the ground truth for
tests/model/smollm2_golden_test.cpp (dfar's GGUF loader + decoder + generate).

Used once to make the fixture; never needed by the build.

    apt-get install -y --no-install-recommends python3-torch python3-pip
    /usr/bin/python3 -m pip install --break-system-packages -r tools/requirements-tools.txt
    /usr/bin/python3 -m pip install --break-system-packages --no-deps gguf==0.10.0 accelerate==0.34.2
    scripts/fetch_model.sh
    /usr/bin/python3 tools/make_smollm2_golden.py

(--no-deps: their dependencies are already there, and pip must not replace
Debian's torch. accelerate: transformers refuses gguf_file= without it; 0.34.2
still runs on torch 1.13. gguf 0.10.0 imports sentencepiece, which
requirements-tools.txt lists.) On a machine with both, the script ran in about
75 s and a rerun rewrote the same tensors.

The model is loaded by transformers itself, AutoModelForCausalLM.from_pretrained(
dir, gguf_file=...): transformers reads the GGUF metadata into a LlamaConfig,
dequantises every tensor to float32 and undoes llama.cpp's Q/K row permutation.
One gap is patched: transformers 4.44 dequantises F32/F16/Q4_0/Q8_0/K-quants
but not Q4_1, which this file uses for every matrix except token_embd (Q8_0).
For types transformers lacks, this script calls gguf-py's reference numpy
dequantiser, gguf.quants.dequantize (what transformers >= 4.46 uses for all
types); transformers' own Q8_0 path is kept and checked bit-equal to gguf-py's.
The GGUF has no output.weight (tied embeddings) and its metadata says nothing
about tying, so tie_word_embeddings=True is passed and lm_head is checked to
share token_embd's storage.

Prompt: configs/templates.yaml's llama2 prompt for the first statement of
DFAR_testset.csv (utf-8-sig). Ids: transformers' GGUF tokenizer without special
tokens (the GGUF says add_bos_token = false), asserted equal to the 'smollm'
pipeline rebuilt by tools/make_tokenizer_golden.py (digits split one by one).

Tensors (fp32 on CPU, one thread, attn_implementation="eager"):
  input_ids      I64 [T]        the prompt ids (no BOS)
  logit_pos      I64 [4]        the prompt positions whose logits are kept: T-4..T-1
  logits         F32 [4, 49152] model(input_ids).logits at those positions
  greedy_ids     I64 [n]        model.generate(do_sample=False, max_new_tokens=20):
                                the new tokens, EOS included if it came (n <= 20)
  greedy_ids_no_eos I64 [20]    the same with eos_token_id=None: 20 tokens, EOS
                                just another token (this prompt's first greedy
                                token is <|im_end|> = EOS, so greedy_ids is [2])
Metadata: "generator" (a JSON string: versions, gguf sha256, prompt, statement,
max |logit|, the greedy text, the top-2 margin of every greedy step).
"""
import argparse
import copy
import csv
import hashlib
import json
import os
import sys

import numpy as np
import torch
import yaml

import gguf
import safetensors
import tokenizers
import transformers
import transformers.modeling_gguf_pytorch_utils as hf_gguf
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.integrations import ggml as hf_ggml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
from make_tokenizer_golden import build_tokenizer  # noqa: E402

if not hasattr(gguf.gguf_reader.ReaderField, "contents"):  # Added after gguf 0.10.

    def _contents(field):
        S = gguf.GGUFValueType.STRING
        one = lambda i: bytes(field.parts[i]).decode("utf-8") if field.types[-1] == S else field.parts[i].tolist()[0]
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            return [one(i) for i in field.data]
        return one(field.data[0])

    gguf.gguf_reader.ReaderField.contents = _contents

N_POS = 4
MAX_NEW = 20

_hf_dequant = hf_ggml.load_dequant_gguf_tensor
_patched_types = set()


def dequant(shape, ggml_type, data, n_bytes):
    """transformers' dequantiser, falling back to gguf-py's for types it lacks."""
    if ggml_type in hf_ggml.GGML_TYPES.values():
        return _hf_dequant(shape=shape, ggml_type=ggml_type, data=data, n_bytes=n_bytes)
    qtype = gguf.GGMLQuantizationType(int(ggml_type))
    _patched_types.add(qtype.name)
    return gguf.quants.dequantize(np.asarray(data), qtype).astype(np.float32).reshape(shape[::-1])


def check_q8_0(gguf_path):
    """transformers' Q8_0 (token_embd) equals gguf-py's reference bit for bit."""
    r = gguf.GGUFReader(gguf_path)
    t = next(t for t in r.tensors if t.name == "token_embd.weight")
    assert t.tensor_type == gguf.GGMLQuantizationType.Q8_0
    a = _hf_dequant(shape=t.shape, ggml_type=int(t.tensor_type), data=t.data, n_bytes=int(t.n_bytes))
    b = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(a.shape)
    assert np.array_equal(a.astype(np.float32), b.astype(np.float32)), "Q8_0 dequantisers disagree"


def greedy(model, input_ids, eos_id):
    """model.generate(greedy, MAX_NEW tokens, stopping at eos_id unless None): the
    new ids and each step's top-1 minus top-2 logit. Checked against greedy
    decoding recomputed from scratch without the KV cache."""
    config = copy.deepcopy(model.generation_config)
    config.update(do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=eos_id, pad_token_id=model.config.eos_token_id)
    # As the model's own config: a generation_config= argument would fall back
    # to the model's eos_token_id for None.
    saved, model.generation_config = model.generation_config, config
    T = input_ids.shape[1]
    with torch.no_grad():
        gen = model.generate(
            input_ids, attention_mask=torch.ones_like(input_ids), output_scores=True, return_dict_in_generate=True
        )
        model.generation_config = saved
        new = gen.sequences[0, T:]
        top2 = [s[0].topk(2).values for s in gen.scores]
        seq = input_ids
        for _ in range(len(new)):
            seq = torch.cat([seq, model(seq).logits[0, -1].argmax().view(1, 1)], 1)
    assert torch.equal(seq[0, T:], new), "generate() != uncached greedy"
    return new.clone(), [round(float(v[0] - v[1]), 4) for v in top2]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def first_statement(data_dir):
    with open(os.path.join(data_dir, "DFAR_testset.csv"), encoding="utf-8-sig", newline="") as fh:
        return next(csv.DictReader(fh))["Statement"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=os.path.join(REPO, ".cache/models/smollm2-135m-instruct.gguf"))
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "dfar"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests/fixtures/models/smollm2_golden.safetensors"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    with open(os.path.join(REPO, "configs/templates.yaml"), encoding="utf-8") as fh:
        template = yaml.safe_load(fh)["llama2"]["prompt"]
    statement = first_statement(args.data)
    prompt = template.replace("{statement}", statement)

    gdir, gname = os.path.split(os.path.abspath(args.gguf))
    hf_tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    ids = hf_tok(prompt, add_special_tokens=False).input_ids
    rebuilt, _ = build_tokenizer(args.gguf)
    assert ids == rebuilt.encode(prompt, add_special_tokens=False).ids, "HF GGUF tokenizer != smollm pipeline"

    check_q8_0(args.gguf)
    hf_gguf.load_dequant_gguf_tensor = dequant
    model = AutoModelForCausalLM.from_pretrained(
        gdir, gguf_file=gname, torch_dtype=torch.float32, attn_implementation="eager", tie_word_embeddings=True
    ).eval()
    assert _patched_types == {"Q4_1"}, _patched_types
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "lm_head not tied"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    cfg = model.config
    print(f"config: {cfg.to_diff_dict()}", file=sys.stderr)

    input_ids = torch.tensor([ids], dtype=torch.long)
    T = input_ids.shape[1]
    with torch.no_grad():
        all_logits = model(input_ids).logits[0]
    stopped, stopped_margins = greedy(model, input_ids, cfg.eos_token_id)
    free, free_margins = greedy(model, input_ids, None)
    assert len(free) == MAX_NEW
    n = len(stopped)
    assert torch.equal(stopped, free[:n]), "EOS changed the tokens before it"
    assert n == MAX_NEW or stopped[-1] == cfg.eos_token_id

    pos = torch.arange(T - N_POS, T)
    logits = all_logits[pos].contiguous()
    info = {
        "model": "SmolLM2-135M-Instruct (SmolLM2-135M-Instruct.Q4_1.gguf, token_embd Q8_0, tied)",
        "gguf_sha256": sha256(args.gguf),
        "gguf_bytes": os.path.getsize(args.gguf),
        "made_by": "tools/make_smollm2_golden.py",
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gguf": getattr(gguf, "__version__", None) or __import__("importlib.metadata").metadata.version("gguf"),
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "dequantised_by_gguf_py": sorted(_patched_types),
        "settings": "fp32, CPU, 1 thread, eager attention, no BOS, greedy (do_sample=False)",
        "template": "llama2 (configs/templates.yaml)",
        "statement": statement,
        "prompt": prompt,
        "num_prompt_tokens": T,
        "max_abs_logit_kept": float(logits.abs().max()),
        "max_abs_logit_prompt": float(all_logits.abs().max()),
        "eos_id": cfg.eos_token_id,
        "greedy_text": hf_tok.decode(stopped.tolist()),
        "greedy_top2_margins": stopped_margins,
        "greedy_no_eos_text": hf_tok.decode(free.tolist()),
        "greedy_no_eos_top2_margins": free_margins,
    }
    tensors = {
        "input_ids": input_ids[0].clone(),
        "logit_pos": pos.clone(),
        "logits": logits,
        "greedy_ids": stopped,
        "greedy_ids_no_eos": free,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tmp = args.out + ".tmp"
    save_file(tensors, tmp, metadata={"generator": json.dumps(info, ensure_ascii=False, sort_keys=True)})
    os.replace(tmp, args.out)
    back = load_file(args.out)
    assert all(torch.equal(back[k], v) for k, v in tensors.items())
    print(json.dumps(info, ensure_ascii=False, indent=1), file=sys.stderr)
    print(f"{args.out}: {os.path.getsize(args.out)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
