#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets into fuzz/corpus/<target>/.

Seeds are small real inputs, so that the fuzzers start from the shapes the
parsers accept and mutate from there: DFAR rows and the CSV fixtures, the
repo's configs, the head of the tiny-spm safetensors fixture and a synthetic
safetensors file, a synthetic GGUF (every metadata type dfar reads, and F32,
F16, Q8_0 and Q4_0 tensors) plus the head of the cached SmolLM2 GGUF when
present, and checkpoint indexes (a hand-written minimal one, and a real one,
trimmed, when --index names the index.json of a tiny run, e.g. 2 ranks,
configs/tiny-lora-lr.yaml, train.max_steps=2 ckpt.every=2 dist.zero=1).

Run from the repository root: python3 fuzz/make_seeds.py [--index path/to/index.json]
Deterministic; needs only the standard library.
"""
import argparse
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(d, name), mode) as f:
        f.write(data)


def csv_seeds():
    shared = os.path.join(ROOT, "..", "shared", "data", "dfar", "DFAR_trainset.csv")
    if os.path.exists(shared):
        with open(shared, "rb") as f:
            lines = f.read().split(b"\n")
        put("fuzz_csv", "dfar_head.csv", b"\n".join(lines[:4]) + b"\n")
    for d in ("tests/fixtures/csv", "data/samples"):
        for name in sorted(os.listdir(os.path.join(ROOT, d))):
            with open(os.path.join(ROOT, d, name), "rb") as f:
                put("fuzz_csv", name, f.read())
    put("fuzz_csv", "crlf_multiline.csv", b'Statement,Label,Reason\r\n"a ""quoted""\r\nline",0,"r"\r\n')


def config_seeds():
    for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
        if name.endswith(".yaml"):
            shutil.copy(os.path.join(ROOT, "configs", name), os.path.join(CORPUS, "fuzz_config", name))


def safetensors_bytes(tensors, metadata=None):
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    put("fuzz_safetensors", "synthetic.safetensors", safetensors_bytes([
        ("w", "F32", [2, 3], struct.pack("<6f", 1, 2, 3, 4, 5, 6)),
        ("h", "F16", [2], struct.pack("<2H", 0x3C00, 0xC000)),
        ("b", "BF16", [1, 2], struct.pack("<2H", 0x3F80, 0x4000)),
        ("i", "I64", [1], struct.pack("<q", 7)),
    ], {"format": "pt"}))
    with open(os.path.join(ROOT, "tests/fixtures/models/tiny-spm/model.safetensors"), "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    put("fuzz_safetensors", "tiny_spm_head.safetensors", raw[: 8 + n + 256])


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, vtype, payload):
    return gguf_string(key) + struct.pack("<I", vtype) + payload


def gguf_array(elem_type, items):
    return struct.pack("<IQ", elem_type, len(items)) + b"".join(items)


def gguf_bytes():
    kvs = [
        gguf_kv("general.architecture", 8, gguf_string("llama")),
        gguf_kv("general.alignment", 4, struct.pack("<I", 32)),
        gguf_kv("llama.block_count", 4, struct.pack("<I", 1)),
        gguf_kv("llama.embedding_length", 4, struct.pack("<I", 32)),
        gguf_kv("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)),
        gguf_kv("llama.rope.freq_base", 12, struct.pack("<d", 10000.0)),
        gguf_kv("llama.context_length", 10, struct.pack("<Q", 2048)),
        gguf_kv("tokenizer.ggml.add_bos_token", 7, b"\x01"),
        gguf_kv("tokenizer.ggml.bos_token_id", 5, struct.pack("<i", 1)),
        gguf_kv("tokenizer.ggml.tokens", 9, gguf_array(8, [gguf_string(t) for t in ("<s>", "a", "b")])),
        gguf_kv("tokenizer.ggml.scores", 9, gguf_array(6, [struct.pack("<f", v) for v in (0, -1, -2)])),
        gguf_kv("tokenizer.ggml.token_type", 9, gguf_array(5, [struct.pack("<i", v) for v in (3, 1, 1)])),
        gguf_kv("misc.u8", 0, b"\x07"),
        gguf_kv("misc.i16", 3, struct.pack("<h", -3)),
    ]
    q8 = struct.pack("<e", 0.5) + bytes(range(32))                  # One Q8_0 block: 32 elements.
    q4 = struct.pack("<e", 0.25) + bytes((i * 17) & 0xFF for i in range(16))  # One Q4_0 block.
    tensors = [("f32", 0, [4, 2], struct.pack("<8f", *range(8))),
               ("f16", 1, [4], struct.pack("<4H", 0x3C00, 0, 0x4000, 0xBC00)),
               ("q8", 8, [32], q8),
               ("q4", 2, [32], q4)]
    infos, data = b"", b""
    for name, gtype, shape, raw in tensors:
        data += b"\x00" * ((32 - len(data) % 32) % 32)
        infos += gguf_string(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        infos += struct.pack("<IQ", gtype, len(data))
        data += raw
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + infos
    head += b"\x00" * ((32 - len(head) % 32) % 32)
    return head + data


def gguf_seeds():
    put("fuzz_gguf", "synthetic.gguf", gguf_bytes())
    cached = os.path.join(os.environ.get("DFAR_CACHE", os.path.join(ROOT, ".cache")), "models",
                          "smollm2-135m-instruct.gguf")
    if os.path.exists(cached):
        with open(cached, "rb") as f:
            put("fuzz_gguf", "smollm2_head.gguf", f.read(4096))


def index_seeds(real_index):
    minimal = {
        "format": "dfar-checkpoint", "version": 1, "step": 3, "world_size": 2, "meta": {"note": "seed"},
        "ranks": [{"rng": {}}, {"rng": {}}],
        "tensors": {
            "w": {"shape": [2, 3], "dtype": "float32", "chunks": [
                {"file": "shard-00000-of-00002.h5", "dataset": "/t/w/0", "begin": 0, "end": 3, "crc32c": 1, "rank": 0},
                {"file": "shard-00001-of-00002.h5", "dataset": "/t/w/3", "begin": 3, "end": 6, "crc32c": 2, "rank": 1}]},
            "step": {"shape": [], "dtype": "int64", "chunks": [
                {"file": "shard-00000-of-00002.h5", "dataset": "/t/step/0", "begin": 0, "end": 1, "crc32c": 0,
                 "rank": 0}]},
        },
    }
    put("fuzz_ckpt_index", "minimal.json", json.dumps(minimal, indent=1))
    if real_index:
        # Trimmed to a few tensors, short RNG states and config text: the
        # largest seed sets libFuzzer's -max_len, and 60 KB inputs fuzz slowly.
        with open(real_index) as f:
            index = json.load(f)

        def trim(x):
            if isinstance(x, list):
                return [trim(v) for v in x[:8]]
            if isinstance(x, dict):
                return {k: trim(v) for k, v in x.items()}
            return x[:64] if isinstance(x, str) else x

        index["tensors"] = {n: t for n, t in index["tensors"].items()
                            if n.startswith(("param/layers.0.attn.q", "optim.exp_avg/layers.0.attn.q"))}
        index["ranks"] = trim(index["ranks"])
        index["meta"]["config_yaml"] = index["meta"]["config_yaml"][:300]
        put("fuzz_ckpt_index", "tiny_run_np2.json", json.dumps(index, indent=1, sort_keys=True) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", help="a real index.json (from a tiny training run) to add as a seed")
    args = ap.parse_args()
    for t in ("fuzz_csv", "fuzz_config", "fuzz_safetensors", "fuzz_gguf", "fuzz_ckpt_index"):
        os.makedirs(os.path.join(CORPUS, t), exist_ok=True)
    csv_seeds()
    config_seeds()
    safetensors_seeds()
    gguf_seeds()
    index_seeds(args.index)


if __name__ == "__main__":
    main()
