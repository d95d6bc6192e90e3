"""Writes tests/fixtures/nf4/golden.json: QLoRA's NF4 with double quantisation
(block 64, absmax block 256), as bitsandbytes computes it on the CPU, for
tests/weights/nf4_test.cpp to check src/weights/nf4.cpp against.

Two independent computations meet here:
  * the reference: bitsandbytes.functional.quantize_4bit(w, blocksize=64,
    compress_statistics=True, quant_type="nf4") and dequantize_4bit, on the
    CPU (its version, and torch's, go into the fixture);
  * this file's own reading of the QLoRA paper (Dettmers et al. 2023) and of
    the 8-bit optimizers paper (Dettmers et al. 2022) for the dynamic 8-bit
    code: the functions below whose names end in _ref. They use numpy float32
    and define the rounding that dfar's C++ implements (nearest code,
    thresholds at the float32 midpoints of neighbouring codes, a value exactly
    at a threshold takes the lower code).
The script writes the bitsandbytes outputs, and first asserts that the two
agree: every packed 4-bit code, every absmax code and the code books bit for
bit; offset, scales and dequantised values to a few float32 ulps.

What was learnt from bitsandbytes' outputs (not from its source):
  * element 2i is the high nibble of byte i, element 2i+1 the low nibble; an
    odd count pads the last low nibble with code 7 (0.0);
  * a block of zeros stores code 7 everywhere; its absmax (0) is quantised
    like any other;
  * NF4 codes are exact nearest codes, ties to the lower code;
  * the 8-bit absmax codes of the CPU backend are only nearly nearest: its
    thresholds sit up to ~0.1% of a gap off the midpoints, and much further
    for |x| < 1e-4, where the code is denser than its search. The fixture's
    inputs are chosen (by seed and salt) so that bitsandbytes' codes are the
    nearest ones; the measured disagreement rate on random data goes into
    the fixture as "bnb_cpu_absmax_code_vs_nearest";
  * a group of 256 absmax values that all equal the offset (scale 0, e.g. a
    one-block tensor) gets code 0 from bitsandbytes (0/0); dfar stores the
    zero code 127. Both dequantise to the offset, which is then the exact
    absmax, so the fixture has no such group.

Inputs of case "multi_group" (16650 values, two absmax groups, the second
partial) are not stored: multi_group_input() makes them from integers times
powers of two, exact in float32, and MultiGroupInput() in the test rebuilds
them bit for bit. The other two cases store their inputs.

Run (any bitsandbytes with a CPU backend; no GPU is needed). The fixture
was made with CPython 3.11.7, bitsandbytes 0.50.2, numpy 2.4.6 and the torch
2.15.0 that pip pulled in beside it (about 5.5 GB under /tmp/bnb):
  python -m pip install --target /tmp/bnb bitsandbytes numpy
  PYTHONPATH=/tmp/bnb python tools/make_nf4_golden.py --out tests/fixtures/nf4/golden.json
It prints each seed or salt it rejects and why; the output is deterministic.
"""
import argparse
import json
import statistics

import numpy as np

F32 = np.float32
BLOCK = 64
ABSMAX_BLOCK = 256
NF4_ZERO = 7
CODE8_ZERO = 127


# ---------------------------------------------------------------------------
# The code books, from the papers.

def nf4_code_ref():
    """QLoRA's NF4: quantiles of N(0,1), normalised to [-1, 1]. The positive
    half is 8 quantiles at probabilities evenly spaced from D down to 0.5 (9
    points; the last, the median 0, is dropped), the negative half 7 from 8
    points, and one exact 0: 16 values, asymmetric so that 0 is a code. D is
    the mean of 1 - 1/(2*15) and 1 - 1/(2*16) (a finite last quantile);
    dividing by the largest quantile makes the endpoints exactly -1 and 1."""
    nd = statistics.NormalDist()
    d = 0.5 * ((1 - 1 / 30) + (1 - 1 / 32))
    pos = [nd.inv_cdf(p) for p in np.linspace(d, 0.5, 9)[:-1]]
    neg = [-nd.inv_cdf(p) for p in np.linspace(d, 0.5, 8)[:-1]]
    top = max(pos)
    return np.array(sorted([v / top for v in pos + neg] + [0.0]), dtype=np.float64)


def linspace_f32(start, end, n):
    """n evenly spaced float32 values from start to end: step = (end - start)
    / (n - 1) in float32; the first n // 2 values are start + i * step, the
    others end - (n - 1 - i) * step, each rounded once to float32. This is
    how torch's float32 linspace came out when probed; it makes the table
    below bit-identical to bitsandbytes'."""
    start, end = F32(start), F32(end)
    step = F32(F32(end - start) / F32(n - 1))
    out = [np.float64(start) + np.float64(step) * i if i < n // 2 else np.float64(end) - np.float64(step) * (n - 1 - i)
           for i in range(n)]
    return np.array(out, dtype=np.float64).astype(F32)


def dynamic_code8_ref():
    """The signed dynamic 8-bit code of 8-bit optimizers, used by QLoRA for
    the absmax values: for each decade level e = 0..6 (magnitude 10^(e-6)),
    2^e linear bins split [0.1, 1] evenly and each contributes its centre
    times 10^(e-6), with both signs: 127 + 127 values, plus 0 and +1 (there
    is no -1). Evaluated in float32: bin edges by linspace_f32, centre =
    (lo + hi) / 2, times float32(10^(e-6)). (Exactly rounded values would
    differ from these by one ulp in 72 of the 256 entries.)"""
    vals = [F32(0.0), F32(1.0)]
    for e in range(7):
        edges = linspace_f32(0.1, 1.0, 2 ** e + 1)
        centres = ((edges[:-1] + edges[1:]) / F32(2)).astype(F32)
        level = (centres * F32(10.0 ** (e - 6))).astype(F32)
        vals += list(level) + list(-level)
    return np.array(sorted(vals), dtype=F32)


# ---------------------------------------------------------------------------
# The independent NF4 + double quantisation (numpy float32).

def thresholds(code):
    """float32 midpoints of neighbouring codes, as dfar computes them."""
    return ((code[:-1] + code[1:]) * F32(0.5)).astype(F32)


def nearest_ref(x, code):
    """Index of the nearest code: the number of thresholds strictly below x
    (so a tie takes the lower code)."""
    return np.searchsorted(thresholds(code), x, side="left").astype(np.uint8)


def margin(x, code):
    """Distance of each x from the nearest threshold."""
    t = thresholds(code).astype(np.float64)
    return np.min(np.abs(x.astype(np.float64)[:, None] - t[None, :]), axis=1)


def normalise(v, scale):
    """v / scale in float32; 0 where the scale is 0 (all-zero block)."""
    safe = np.where(scale == 0, F32(1), scale).astype(F32)
    return np.where(scale == 0, F32(0), (v / safe).astype(F32)).astype(F32)


def quantize_ref(w, code4, code8):
    n = len(w)
    nb = -(-n // BLOCK)
    padded = np.zeros(nb * BLOCK, dtype=F32)
    padded[:n] = w
    blocks = padded.reshape(nb, BLOCK)
    absmax = np.max(np.abs(blocks), axis=1).astype(F32)
    x4 = normalise(blocks, absmax[:, None]).reshape(-1)[:n]
    idx4 = nearest_ref(x4, code4)
    offset = F32(np.mean(absmax.astype(np.float64)))
    d = (absmax - offset).astype(F32)
    ng = -(-nb // ABSMAX_BLOCK)
    scales = np.array([np.max(np.abs(d[g * ABSMAX_BLOCK:(g + 1) * ABSMAX_BLOCK])) for g in range(ng)], dtype=F32)
    x8 = normalise(d, np.repeat(scales, ABSMAX_BLOCK)[:nb])
    idx8 = nearest_ref(x8, code8)
    return dict(absmax=absmax, x4=x4, idx4=idx4, offset=offset, scales=scales, x8=x8, idx8=idx8)


def dequantize_ref(idx4, idx8, scales, offset, code4, code8):
    s = np.repeat(scales, ABSMAX_BLOCK)[:len(idx8)]
    ahat = ((code8[idx8] * s).astype(F32) + offset).astype(F32)
    return (code4[idx4] * np.repeat(ahat, BLOCK)[:len(idx4)]).astype(F32)


def pack(idx4):
    """Element 2i -> high nibble of byte i; an odd tail is padded with 0.0's code."""
    if len(idx4) % 2:
        idx4 = np.append(idx4, np.uint8(NF4_ZERO))
    return ((idx4[0::2] << 4) | idx4[1::2]).astype(np.uint8)


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in bytes(data):
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


# ---------------------------------------------------------------------------
# bitsandbytes.

def bnb_quantize(w):
    import torch
    import bitsandbytes.functional as F
    t = torch.from_numpy(np.ascontiguousarray(w, dtype=F32))
    q, s = F.quantize_4bit(t, blocksize=BLOCK, compress_statistics=True, quant_type="nf4")
    assert s.nested and s.state2.blocksize == ABSMAX_BLOCK and s.blocksize == BLOCK
    deq = F.dequantize_4bit(q, s).flatten().numpy().astype(F32)
    return dict(packed=q.flatten().numpy().astype(np.uint8), idx8=s.absmax.numpy().astype(np.uint8),
                offset=F32(s.offset.item()), scales=s.state2.absmax.numpy().astype(F32), deq=deq,
                code4=s.code.numpy().astype(F32), code8=s.state2.code.numpy().astype(F32))


def agree(w, code4, code8):
    """Both implementations on w; returns (bnb outputs, None) or (None, why)."""
    ref = quantize_ref(w, code4, code8)
    b = bnb_quantize(w)
    if not np.array_equal(b["packed"], pack(ref["idx4"])):
        return None, "4-bit codes differ"
    if not np.array_equal(b["idx8"], ref["idx8"]):
        return None, "absmax codes differ at %s" % np.nonzero(b["idx8"] != ref["idx8"])[0].tolist()
    # Margins: an ulp of difference in offset, scale or w/absmax must not move a code.
    if np.min(margin(ref["x4"], code4)) < 1e-6 and not tie_case(ref["x4"], code4):
        return None, "a 4-bit input lies within 1e-6 of a threshold"
    if np.min(margin(ref["x8"], code8)) < 1e-5:
        return None, "an absmax lies within 1e-5 of a threshold"
    ulp = 4 * np.spacing(F32(max(abs(ref["offset"]), 1e-30)))
    assert abs(b["offset"] - ref["offset"]) <= ulp, (b["offset"], ref["offset"])
    assert np.all(np.abs(b["scales"] - ref["scales"]) <= 4 * np.spacing(ref["scales"])), (b["scales"], ref["scales"])
    deq = dequantize_ref(ref["idx4"], ref["idx8"], ref["scales"], ref["offset"], code4, code8)
    tol = 8 * 2.0 ** -24 * (np.max(ref["scales"]) + abs(ref["offset"]))
    assert np.max(np.abs(deq - b["deq"])) <= tol, np.max(np.abs(deq - b["deq"]))
    return b, None


def tie_case(x4, code4):
    """Inputs that sit exactly on thresholds on purpose (case "ties")."""
    m = margin(x4, code4)
    return bool(np.all((m >= 1e-6) | np.isin(x4, thresholds(code4))))


# ---------------------------------------------------------------------------
# The cases.

def mixed_input(seed):
    """357 values: weight-like, all-zero, outliers, uniform, tiny, and a
    partial last block of 37 (odd n)."""
    rng = np.random.RandomState(seed)
    parts = [rng.randn(BLOCK) * 0.02, np.zeros(BLOCK), rng.randn(BLOCK) * 0.02, rng.uniform(-1, 1, BLOCK),
             rng.randn(BLOCK) * 1e-4, rng.randn(37) * 0.05]
    parts[2][[5, 40]] = [1.5, -0.9]
    return np.concatenate(parts).astype(F32)


def ties_input(seed, code4):
    """Block 0: absmax 1 and every threshold exactly (a tie must take the
    lower code); block 1: random, so the absmax scale is not 0."""
    rng = np.random.RandomState(seed)
    b0 = np.zeros(BLOCK, dtype=F32)
    b0[0] = 1.0
    b0[1:16] = thresholds(code4)
    b0[16:31] = -thresholds(code4)[::-1]
    b0[31:] = rng.randn(BLOCK - 31) * 0.3
    b0[31:] = np.clip(b0[31:], -0.99, 0.99)
    return np.concatenate([b0, (rng.randn(BLOCK) * 0.5).astype(F32)]).astype(F32)


MULTI_N = 64 * 260 + 10


def multi_group_input(salt):
    """w[i] = k * 2^-(12 + block % 3) with k an integer in [-3000, 3000] from a
    hash of i (every 997th times 3); block 100 is all zero. Exact in float32,
    so C++ rebuilds it bit for bit (see MultiGroupInput in nf4_test.cpp)."""
    out = np.zeros(MULTI_N, dtype=F32)
    for i in range(MULTI_N):
        b = i // BLOCK
        if b == 100:
            continue
        h = (i * 2654435761 + salt) % 2 ** 32
        k = h % 2001 + (h >> 11) % 2001 + (h >> 21) % 2001 - 3000
        if i % 997 == 0:
            k *= 3
        out[i] = F32(k) * F32(2.0 ** -(12 + b % 3))
    return out


def case_full(name, w, b, extra):
    c = dict(name=name, n=int(len(w)), input=[float("%.9g" % v) for v in w], codes_hex=bytes(b["packed"]).hex(),
             absmax_codes=b["idx8"].tolist(), absmax_scales=[float("%.9g" % v) for v in b["scales"]],
             absmax_offset=float("%.9g" % b["offset"]), dequantized=[float("%.9g" % v) for v in b["deq"]])
    c.update(extra)
    return c


def case_hashed(name, w, b, extra):
    picks = sorted(set(list(range(0, len(w), 331)) + [len(w) - 1] + list(range(6400, 6464, 9))))
    c = dict(name=name, n=int(len(w)), codes_bytes=int(len(b["packed"])), codes_fnv1a64="%016x" % fnv1a64(b["packed"]),
             codes_head_hex=bytes(b["packed"][:32]).hex(), absmax_codes_hex=bytes(b["idx8"]).hex(),
             absmax_scales=[float("%.9g" % v) for v in b["scales"]], absmax_offset=float("%.9g" % b["offset"]),
             dequantized_at=dict(index=picks, value=[float("%.9g" % b["deq"][i]) for i in picks]))
    c.update(extra)
    return c


def first_agreeing(make, what):
    for k in range(100):
        w = make(k)
        b, why = agree(w, CODE4, CODE8)
        if b is not None:
            return k, w, b
        print("%s %d rejected: %s" % (what, k, why))
    raise SystemExit("no %s in 0..99 gives inputs on which bitsandbytes and the reference agree" % what)


def disagreement_rate(code8, n_blocks=4000, seed=1234):
    """How often bitsandbytes' CPU 8-bit blockwise code is not the nearest one,
    on N(0,1) data in blocks of 256."""
    import torch
    import bitsandbytes.functional as F
    a = np.random.RandomState(seed).randn(n_blocks * ABSMAX_BLOCK).astype(F32)
    q, s = F.quantize_blockwise(torch.from_numpy(a), blocksize=ABSMAX_BLOCK)
    scale = np.repeat(s.absmax.numpy().astype(F32), ABSMAX_BLOCK)
    ours = nearest_ref(normalise(a, scale), code8)
    theirs = q.numpy().astype(np.int64)
    diff = theirs != ours
    return dict(values=int(len(a)), distribution="N(0,1), blocks of 256, seed %d" % seed,
                not_nearest=int(diff.sum()), max_index_distance=int(np.max(np.abs(theirs - ours))),
                not_nearest_with_abs_x_above_1e_3=int(np.sum(diff & (np.abs(a / scale) > 1e-3))))


def dump(obj, depth=0):
    """JSON with one key per line down to the cases' fields, lists on one line."""
    pad = " " * (depth + 1)
    if isinstance(obj, dict) and depth < 3:
        items = [pad + json.dumps(k) + ": " + dump(v, depth + 1) for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}" + ("\n" if depth == 0 else "")
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        return "[\n" + ",\n".join(pad + dump(v, depth + 1) for v in obj) + "\n" + " " * depth + "]"
    return json.dumps(obj, separators=(",", ":"))


def main():
    global CODE4, CODE8
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/nf4/golden.json")
    args = ap.parse_args()

    import torch
    import bitsandbytes

    probe = bnb_quantize(np.linspace(-1, 1, 2 * BLOCK * 3, dtype=F32))
    CODE4, CODE8 = probe["code4"], probe["code8"]
    paper4 = nf4_code_ref()
    assert np.max(np.abs(paper4 - CODE4)) < 1e-6, np.max(np.abs(paper4 - CODE4))
    assert np.array_equal(dynamic_code8_ref(), CODE8), "dynamic 8-bit code differs from bitsandbytes'"

    cases = []
    seed, w, b = first_agreeing(mixed_input, "seed")
    cases.append(case_full("mixed", w, b, dict(seed=seed, blocks="N(0,.02) | zeros | N(0,.02) with 1.5 and -0.9 | "
                                                           "U(-1,1) | N(0,1e-4) | 37 x N(0,.05)")))
    seed, w, b = first_agreeing(lambda s: ties_input(s, CODE4), "seed")
    cases.append(case_full("ties", w, b, dict(seed=seed, blocks="absmax 1 with each threshold exactly | N(0,.5)")))
    salt, w, b = first_agreeing(multi_group_input, "salt")
    cases.append(case_hashed("multi_group", w, b, dict(salt=salt, formula=" ".join(multi_group_input.__doc__.split()))))

    fixture = {
        "format": "dfar.nf4_golden",
        "version": 1,
        "generator": "tools/make_nf4_golden.py",
        "reference": {"library": "bitsandbytes", "version": bitsandbytes.__version__, "torch": torch.__version__,
                      "backend": "cpu",
                      "call": "quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type='nf4'); "
                              "dequantize_4bit(q, state)"},
        "layout": {"block": BLOCK, "absmax_block": ABSMAX_BLOCK, "even_element": "high nibble",
                   "odd_tail_pad_code": NF4_ZERO},
        "notes": ["codes and absmax codes are bitsandbytes' and equal the exact nearest codes (ties to the lower "
                  "code); the generator asserts it",
                  "offset, scales and dequantized are bitsandbytes' float32 values printed with 9 significant "
                  "digits (exact after parsing to double and rounding to float)",
                  "nf4_code and dynamic_code8 are bitsandbytes' tables; the generator asserts that the paper's "
                  "construction gives them (nf4 to 1e-6, code8 bit for bit)"],
        "bnb_cpu_absmax_code_vs_nearest": disagreement_rate(CODE8),
        "nf4_code": [float("%.9g" % v) for v in CODE4],
        "dynamic_code8": [float("%.9g" % v) for v in CODE8],
        "cases": cases,
    }
    with open(args.out, "w") as f:
        f.write(dump(fixture))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
