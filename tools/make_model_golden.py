#!/usr/bin/env python3
"""Makes tests/fixtures/models/: tiny random Llama-family checkpoints and the
logits, loss and gradients Hugging Face `transformers` computes for them.

The C++ decoder is tested against these files (see tests/fixtures/models/
README.md). Everything is fp32 on CPU, eager attention, fixed seeds: rerunning
the script rewrites identical files.

Per model folder <out>/<name>/:
  config.json         the HF config (save_pretrained)
  model.safetensors   the HF weights (save_pretrained, safe_serialization)
  golden.safetensors  input_ids int64 [2,12], logits f32 [2,12,vocab],
                      loss f32 [] (model(input_ids, labels=input_ids).loss),
                      grad.<hf name> f32 for every named parameter

Usage (see tools/requirements-tools.txt for the install):
    /usr/bin/python3 tools/make_model_golden.py --out tests/fixtures/models
"""
import argparse
import json
import os
import sys

import torch

import safetensors
import transformers
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH, SEQ = 2, 12
INIT_STD = 0.2  # weight matrices; large enough that attention is not uniform
NORM_STD = 0.1  # RMSNorm weights are 1 + NORM_STD * N(0,1)
BIAS_STD = 0.1  # biases (Qwen2 q/k/v) are BIAS_STD * N(0,1), not HF's zeros

SIZES = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    initializer_range=INIT_STD,
    hidden_act="silu",
    use_cache=False,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=None,
)


def supports_llama3_rope():
    try:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    except ImportError:
        return False
    return "llama3" in ROPE_INIT_FUNCTIONS


def model_specs():
    """(name, model class, config, seed) for each fixture."""
    specs = [
        ("llama", LlamaForCausalLM,
         LlamaConfig(**SIZES, rope_theta=10000.0, tie_word_embeddings=False,
                     attention_bias=False, mlp_bias=False), 1001),
    ]
    if supports_llama3_rope():
        specs.append(
            ("llama3", LlamaForCausalLM,
             LlamaConfig(**SIZES, rope_theta=500000.0, tie_word_embeddings=True,
                         attention_bias=False, mlp_bias=False,
                         rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 16}), 1002))
    else:
        print("transformers %s has no llama3 rope scaling: skipping llama3" % transformers.__version__)
    specs += [
        ("mistral", MistralForCausalLM,
         MistralConfig(**SIZES, rope_theta=10000.0, tie_word_embeddings=False,
                       sliding_window=4), 1003),
        ("qwen2", Qwen2ForCausalLM,
         Qwen2Config(**SIZES, rope_theta=10000.0, tie_word_embeddings=True,
                     use_sliding_window=False), 1004),
    ]
    return specs


def init_params(model, seed):
    """Deterministic init, in sorted-name order, independent of HF's own init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith(".bias"):
                p.copy_(BIAS_STD * noise)
            elif p.dim() == 1:  # RMSNorm weights
                p.copy_(1.0 + NORM_STD * noise)
            else:
                p.copy_(INIT_STD * noise)


def make_input_ids(vocab, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (BATCH, SEQ), generator=gen, dtype=torch.int64)


def run(model, input_ids):
    """logits, loss and {name: grad} for model(input_ids, labels=input_ids)."""
    model.zero_grad(set_to_none=True)
    out = model(input_ids=input_ids, labels=input_ids, use_cache=False)
    out.loss.backward()
    grads = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            raise RuntimeError("no gradient for " + name)
        grads[name] = p.grad.detach().clone().contiguous()
    return out.logits.detach().clone().contiguous(), out.loss.detach().clone(), grads


def check_loss(logits, loss, input_ids):
    """The HF loss is mean cross-entropy of logits[:, :-1] vs input_ids[:, 1:]."""
    ref = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1))
    assert torch.allclose(ref, loss, atol=1e-6, rtol=0), (ref.item(), loss.item())


def versions():
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "python": sys.version.split()[0],
    }


def make_one(name, cls, config, seed, out_dir):
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = cls(config).to(torch.float32)
    init_params(model, seed)
    model.train(False)  # dropout is 0 anyway; no stochastic layers
    input_ids = make_input_ids(config.vocab_size, seed + 1)

    logits, loss, grads = run(model, input_ids)
    check_loss(logits, loss, input_ids)

    model.save_pretrained(folder, safe_serialization=True)
    # save_pretrained writes generation_config.json too; not part of the fixture
    gen_cfg = os.path.join(folder, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)

    golden = {"input_ids": input_ids, "logits": logits, "loss": loss}
    for pname, g in grads.items():
        golden["grad." + pname] = g
    meta = dict(versions())
    meta.update({"model": name, "seed": str(seed), "dtype": "float32",
                 "attn_implementation": "eager", "device": "cpu"})
    # One metadata key: safetensors writes its metadata map in hash order, so
    # several keys would make the bytes differ between runs.
    save_file(golden, os.path.join(folder, "golden.safetensors"),
              metadata={"generator": json.dumps(meta, sort_keys=True)})

    verify(name, cls, config, folder, model)
    return logits


def verify(name, cls, config, folder, original):
    """Reload from disk with transformers and recompute everything bit-for-bit."""
    reloaded = AutoModelForCausalLM.from_pretrained(
        folder, torch_dtype=torch.float32, attn_implementation="eager")
    assert type(reloaded) is cls, type(reloaded)
    reloaded.train(False)
    golden = load_file(os.path.join(folder, "golden.safetensors"))
    input_ids = golden["input_ids"]
    assert input_ids.dtype == torch.int64 and tuple(input_ids.shape) == (BATCH, SEQ)

    sd_file = load_file(os.path.join(folder, "model.safetensors"))
    params = dict(reloaded.named_parameters())
    for pname, p in params.items():
        assert torch.equal(p.detach(), dict(original.named_parameters())[pname].detach()), pname
    for key in sd_file:
        assert key in params, "model.safetensors has %s, not a parameter" % key
    missing = sorted(set(params) - set(sd_file))
    assert not missing, "parameters missing from model.safetensors: %s" % missing
    if config.tie_word_embeddings:
        assert "lm_head.weight" not in sd_file
        assert reloaded.lm_head.weight is reloaded.model.embed_tokens.weight

    logits, loss, grads = run(reloaded, input_ids)
    assert logits.dtype == torch.float32 and tuple(logits.shape) == (BATCH, SEQ, config.vocab_size)
    assert torch.equal(logits, golden["logits"]), "logits differ after reload"
    assert loss.shape == () and torch.equal(loss, golden["loss"]), "loss differs after reload"
    grad_keys = {k[len("grad."):] for k in golden if k.startswith("grad.")}
    assert grad_keys == set(grads), (grad_keys ^ set(grads))
    for pname, g in grads.items():
        assert torch.equal(g, golden["grad." + pname]), "grad differs after reload: " + pname
        assert g.abs().max() > 0, "zero gradient: " + pname
    assert set(golden) == {"input_ids", "logits", "loss"} | {"grad." + k for k in grads}

    # The features each fixture is about must actually change the output.
    if name == "mistral":
        cfg = type(config).from_dict(config.to_dict())
        cfg.sliding_window = None
        cfg._attn_implementation = "eager"
        full = cls(cfg)
        full.load_state_dict(reloaded.state_dict())
        with torch.no_grad():
            full_logits = full(input_ids=input_ids, use_cache=False).logits
        d = (full_logits - logits).abs().max().item()
        assert d > 1e-2, "sliding window does not matter (max diff %g)" % d
        print("  mistral: max |logits(window 4) - logits(no window)| = %.4f" % d)
    if name == "llama3":
        cfg = type(config).from_dict(config.to_dict())
        cfg.rope_scaling = None
        cfg._attn_implementation = "eager"
        plain = cls(cfg)
        plain.load_state_dict(reloaded.state_dict())
        with torch.no_grad():
            plain_logits = plain(input_ids=input_ids, use_cache=False).logits
        d = (plain_logits - logits).abs().max().item()
        assert d > 1e-3, "llama3 rope scaling does not matter (max diff %g)" % d
        print("  llama3: max |logits(llama3 rope) - logits(plain rope)| = %.4f" % d)

    print("%-8s ok: loss %.6f, max|logits| %.4f, max|grad| %.4g, %d grads, %d params"
          % (name, loss.item(), logits.abs().max().item(),
             max(g.abs().max().item() for g in grads.values()), len(grads),
             sum(p.numel() for p in params.values())))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "models"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # same reduction order on every run
    torch.use_deterministic_algorithms(True)
    print("versions:", json.dumps(versions()))
    for name, cls, config, seed in model_specs():
        make_one(name, cls, config, seed, args.out)


if __name__ == "__main__":
    main()
