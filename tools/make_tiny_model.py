#!/usr/bin/env python3
"""Writes tests/fixtures/models/tiny-spm: a small random Llama for training tests.

Its vocabulary is the committed SentencePiece fixture (tests/fixtures/spm,
512 pieces trained on DFAR text), so `dfar train` can run end to end on real
DFAR rows in seconds. Weights are random (seeded): tests check mechanics and
equivalences, not quality. Run with Debian's python3-torch + transformers
(tools/requirements-tools.txt):  /usr/bin/python3 tools/make_tiny_model.py
"""
import argparse
import os
import shutil

import torch
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--out", default="tests/fixtures/models/tiny-spm")
args = ap.parse_args()

torch.manual_seed(20241126)
config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                     rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
                     bos_token_id=1, eos_token_id=2, pad_token_id=0)
model = LlamaForCausalLM(config).eval()
os.makedirs(args.out, exist_ok=True)
model.save_pretrained(args.out, safe_serialization=True)
gen = os.path.join(args.out, "generation_config.json")
if os.path.exists(gen):
    os.remove(gen)
shutil.copy("tests/fixtures/spm/tokenizer.model", os.path.join(args.out, "tokenizer.model"))
print("wrote", args.out, sum(p.numel() for p in model.parameters()), "parameters")
