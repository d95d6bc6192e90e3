#!/usr/bin/env python3
"""Makes tests/fixtures/spm/tokenizer.model, the tiny SentencePiece model the
unit tests load.

It is trained on the statements and reasons of the first 300 rows of the DFAR
train set, with the trainer arguments of dfar's TrainSentencePieceTokenizer
(src/data/tokenizer_sentencepiece.cpp), so the fixture behaves like a model
that `dfar` itself trains. Keep the two argument lists in step.

Usage (needs `pip install sentencepiece`):
    python3 tools/make_spm_fixture.py [--csv PATH] [--out DIR]
"""
import argparse
import csv
import os

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = 300
VOCAB = 512
SEED = 1234


def read_texts(path, rows):
    texts = []
    with open(path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i >= rows:
                break
            texts += [row["Statement"], row["Reason"]]
    return [t for t in texts if t]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=os.path.join(ROOT, "..", "shared", "data", "dfar", "DFAR_trainset.csv"))
    parser.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "spm"))
    args = parser.parse_args()
    texts = read_texts(args.csv, ROWS)
    os.makedirs(args.out, exist_ok=True)
    spm.set_random_generator_seed(SEED)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_prefix=os.path.join(args.out, "tokenizer"),
        model_type="unigram",
        vocab_size=VOCAB,
        pad_id=0,
        bos_id=1,
        eos_id=2,
        unk_id=3,
        user_defined_symbols="<|im_start|>,<|im_end|>",
        character_coverage=1.0,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        hard_vocab_limit=False,
        input_sentence_size=len(texts),
        shuffle_input_sentence=False,
        num_threads=1,
        max_sentence_length=65536,
        minloglevel=1,
    )
    # The .vocab file is a human-readable listing; tests need only the model.
    os.remove(os.path.join(args.out, "tokenizer.vocab"))
    size = os.path.getsize(os.path.join(args.out, "tokenizer.model"))
    print(f"wrote {args.out}/tokenizer.model ({size} bytes, {len(texts)} texts)")


if __name__ == "__main__":
    main()
