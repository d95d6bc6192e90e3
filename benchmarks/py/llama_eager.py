"""A minimal Llama-family decoder in plain PyTorch eager (no transformers).

This is the "same math in Python PyTorch eager" baseline for dfar's training
step benchmark (benchmarks/step): token embedding, per-layer pre-RMSNorm, RoPE
(rope_theta from config.json, no rope scaling), grouped-query attention, a
SwiGLU MLP, the final RMSNorm and a tied or untied LM head. Parameter names
are Hugging Face's (model.layers.N.self_attn.q_proj.weight, ...), so an HF
model directory (config.json + model.safetensors) loads with a strict
load_state_dict.

It is written the way a careful engineer would write it for speed on the
torch it runs on (make bench: the torch 2.11 wheel, the libtorch of dfar's
build it is compared with):
  * attention goes through torch.nn.functional.scaled_dot_product_attention
    with is_causal=True, and enable_gqa=True where torch has it (>= 2.5, as
    dfar uses it), so no K/V copy; on torch 1.13 through the private
    _scaled_dot_product_attention(is_causal) entry point with the KV heads
    expanded; otherwise a matmul + masked softmax fallback;
  * RoPE cos/sin tables are cached per (seq, dtype);
  * the loss computes logits only at supervised positions: the hidden states
    of positions whose label != -100 are index_select-ed before the final norm
    and the LM head, and cross_entropy(reduction="sum") / count gives the mean.

Labels are pre-shifted (label[b][t] is the target for position t), unlike HF,
which shifts internally.
"""
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE_INDEX = -100
HAVE_PUBLIC_SDPA = hasattr(F, "scaled_dot_product_attention")
HAVE_GQA = HAVE_PUBLIC_SDPA and "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or "")
HAVE_SDPA = HAVE_PUBLIC_SDPA or hasattr(F, "_scaled_dot_product_attention")


def attention_impl():
    if HAVE_PUBLIC_SDPA:
        return "scaled_dot_product_attention(is_causal%s)" % (", enable_gqa" if HAVE_GQA else "")
    return "_scaled_dot_product_attention(is_causal)" if HAVE_SDPA else "matmul+softmax"


class LlamaConfig:
    def __init__(self, d):
        self.hidden_size = d["hidden_size"]
        self.num_hidden_layers = d["num_hidden_layers"]
        self.num_attention_heads = d["num_attention_heads"]
        self.num_key_value_heads = d.get("num_key_value_heads") or d["num_attention_heads"]
        self.intermediate_size = d["intermediate_size"]
        self.vocab_size = d["vocab_size"]
        self.rms_norm_eps = d.get("rms_norm_eps", 1e-6)
        self.rope_theta = d.get("rope_theta", 10000.0)
        self.tie_word_embeddings = d.get("tie_word_embeddings", False)
        self.head_dim = d.get("head_dim") or self.hidden_size // self.num_attention_heads
        if d.get("rope_scaling"):
            raise ValueError("rope_scaling is not supported: %r" % (d["rope_scaling"],))
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError("hidden_act must be silu, got %r" % d.get("hidden_act"))
        if d.get("attention_bias") or d.get("mlp_bias"):
            raise ValueError("attention/mlp biases are not supported")

    @classmethod
    def from_dir(cls, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            return cls(json.load(f))


class RMSNorm(nn.Module):
    """HF LlamaRMSNorm: normalise in fp32, cast back, then scale."""

    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        if x.dtype == torch.float32:
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Rope:
    """cos/sin tables (HF layout: the two halves of head_dim share a frequency)."""

    def __init__(self, head_dim, theta):
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.cache = {}

    def get(self, seq, dtype):
        key = (seq, dtype)
        if key not in self.cache:
            t = torch.arange(seq, dtype=torch.float32)
            freqs = torch.outer(t, self.inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            self.cache[key] = (emb.cos().to(dtype), emb.sin().to(dtype))  # (T, D)
        return self.cache[key]


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.nh = cfg.num_attention_heads
        self.nkv = cfg.num_key_value_heads
        self.hd = cfg.head_dim
        h = cfg.hidden_size
        self.q_proj = nn.Linear(h, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(h, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(h, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, h, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)   # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)  # (B, KV, T, D)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv
        if rep > 1 and not HAVE_GQA:  # GQA without head broadcasting: expand the kv heads
            k = k[:, :, None].expand(B, self.nkv, rep, T, self.hd).reshape(B, self.nh, T, self.hd)
            v = v[:, :, None].expand(B, self.nkv, rep, T, self.hd).reshape(B, self.nh, T, self.hd)
        if HAVE_PUBLIC_SDPA:
            kw = {"enable_gqa": True} if rep > 1 and HAVE_GQA else {}
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, **kw)
        elif HAVE_SDPA:
            # torch 1.13 signature: (q, k, v, attn_mask, dropout_p, need_attn_weights, is_causal)
            o = F._scaled_dot_product_attention(q, k, v, None, 0.0, False, True)[0]
        else:
            s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.hd))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            s = s.masked_fill(mask, float("-inf"))
            o = torch.matmul(torch.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype), v)
        o = o.transpose(1, 2).reshape(B, T, self.nh * self.hd)
        return self.o_proj(o)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, i = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LlamaEager(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Body(cfg)
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.rope = Rope(cfg.head_dim, cfg.rope_theta)

    def head_weight(self):
        return self.model.embed_tokens.weight if self.cfg.tie_word_embeddings else self.lm_head.weight

    def hidden(self, ids):
        """Hidden states after the last decoder layer (before the final norm)."""
        x = self.model.embed_tokens(ids)
        cos, sin = self.rope.get(ids.shape[1], x.dtype)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return x

    def forward(self, ids):
        """Full logits (B, T, V); used for checks, not by the training step."""
        return F.linear(self.model.norm(self.hidden(ids)), self.head_weight())

    def loss(self, ids, labels):
        """Mean cross-entropy over positions whose (pre-shifted) label != -100.

        Only the supervised positions go through the final norm and LM head."""
        x = self.hidden(ids)
        flat = labels.reshape(-1)
        idx = (flat != IGNORE_INDEX).nonzero().squeeze(1)
        h = x.reshape(-1, x.shape[-1]).index_select(0, idx)
        logits = F.linear(self.model.norm(h), self.head_weight())
        if logits.dtype != torch.float32:
            logits = logits.float()
        return F.cross_entropy(logits, flat.index_select(0, idx), reduction="sum") / idx.numel()


def load_state(model_dir):
    from safetensors.torch import load_file
    path = os.path.join(model_dir, "model.safetensors")
    if not os.path.exists(path):
        raise FileNotFoundError(path + " (sharded checkpoints are not supported)")
    return load_file(path)


def load_model(model_dir, dtype=torch.float32):
    """Build a LlamaEager from an HF model directory (config.json + model.safetensors)."""
    cfg = LlamaConfig.from_dir(model_dir)
    model = LlamaEager(cfg)
    state = load_state(model_dir)
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    state = {k: v for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")}
    model.load_state_dict(state, strict=True)
    return model.to(dtype)
