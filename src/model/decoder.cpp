#include "dfar/model/decoder.h"

#include <cmath>

#include "dfar/core/error.h"
#include "dfar/core/torch_compat.h"
#include "dfar/model/activation_checkpoint.h"

namespace dfar {

// ---- masks and RoPE tables, computed once per forward call --------------------

struct AttentionContext {
  torch::Tensor cos, sin;       // [B, 1, T, head_dim], compute dtype.
  torch::Tensor additive_mask;  // [B, 1, T, S] 0 / -inf; undefined when plain causal.
  bool plain_causal = false;    // No padding, no segments, no window, no cache.
  AttentionKernel kernel = AttentionKernel::kSdpa;
};

namespace {

torch::Tensor RotateHalf(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

torch::Tensor ApplyRope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return x * cos + RotateHalf(x) * sin;
}

// allowed[b, q, s] per the contract in decoder.h; slots are absolute cache slots.
torch::Tensor AllowedMask(const torch::Tensor& seg_q, const torch::Tensor& seg_k, int64_t q_offset, int64_t window) {
  const auto opts = torch::TensorOptions().dtype(torch::kLong).device(seg_q.device());
  const int64_t t = seg_q.size(1), s = seg_k.size(1);
  auto q_slot = torch::arange(q_offset, q_offset + t, opts).view({1, t, 1});
  auto k_slot = torch::arange(0, s, opts).view({1, 1, s});
  auto allowed = (k_slot <= q_slot) & (seg_q.unsqueeze(2) == seg_k.unsqueeze(1)) & (seg_k.unsqueeze(1) != 0);
  if (window > 0) allowed = allowed & ((q_slot - k_slot) < window);
  // A padding query attends to itself only, so its (ignored) output stays finite.
  return allowed | (q_slot == k_slot);
}

}  // namespace

torch::Tensor RopeInverseFrequencies(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  auto idx = torch::arange(0, half, torch::kDouble) * 2.0 / static_cast<double>(c.head_dim);
  auto inv = 1.0 / torch::pow(torch::full({half}, c.rope_theta, torch::kDouble), idx);
  if (c.rope_scaling.type == "llama3") {
    // Llama-3.1 scaling: long wavelengths are slowed by `factor`, short ones
    // kept, and the band between interpolated smoothly.
    const auto& r = c.rope_scaling;
    const double old_ctx = static_cast<double>(r.original_max_position);
    const double low_wavelen = old_ctx / r.low_freq_factor, high_wavelen = old_ctx / r.high_freq_factor;
    auto wavelen = 2.0 * M_PI / inv;
    auto scaled = torch::where(wavelen > low_wavelen, inv / r.factor, inv);
    auto smooth = (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
    auto smoothed = (1.0 - smooth) * scaled / r.factor + smooth * scaled;
    auto medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen);
    inv = torch::where(medium, smoothed, scaled);
  }
  return inv.to(torch::kFloat);
}

// ---- Proj (linear with optional LoRA) -------------------------------------------

ProjImpl::ProjImpl(int64_t in, int64_t out, bool has_bias) {
  weight = register_parameter("weight", torch::empty({out, in}));
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (has_bias) bias = register_parameter("bias", torch::zeros({out}));
}

torch::Tensor ProjImpl::forward(const torch::Tensor& x) {
  auto y = bias.defined() ? torch::nn::functional::linear(x, weight, bias) : torch::nn::functional::linear(x, weight);
  if (!has_lora() || merged) return y;
  auto h = lora_dropout > 0 && is_training() ? torch::dropout(x, lora_dropout, true) : x;
  // Scaling the rank-r intermediate, not the [.., out] result, keeps the
  // multiply (and its backward) r/out the size: 1.4 s of an 11.9 s SmolLM2
  // fp32 LoRA step before (benchmarks/step).
  return y + torch::nn::functional::linear(torch::nn::functional::linear(h, lora_a) * lora_scale, lora_b);
}

void ProjImpl::EnableLora(int64_t rank, double alpha, double dropout) {
  DFAR_CHECK(!has_lora(), "LoRA is already enabled on this projection");
  DFAR_CHECK(rank > 0, "LoRA rank must be positive, got ", rank);
  const auto opts = weight.options().requires_grad(false);
  lora_a = register_parameter("lora_a", torch::empty({rank, weight.size(1)}, opts));
  torch::nn::init::kaiming_uniform_(lora_a, std::sqrt(5.0));
  lora_b = register_parameter("lora_b", torch::zeros({weight.size(0), rank}, opts));
  lora_scale = alpha / static_cast<double>(rank);
  lora_dropout = dropout;
  weight.set_requires_grad(false);
  if (bias.defined()) bias.set_requires_grad(false);
}

void ProjImpl::MergeLora() {
  DFAR_CHECK(has_lora() && !merged, "MergeLora needs LoRA enabled and not yet merged");
  torch::NoGradGuard no_grad;
  weight.add_(torch::matmul(lora_b, lora_a) * lora_scale);
  merged = true;
}

void ProjImpl::UnmergeLora() {
  DFAR_CHECK(has_lora() && merged, "UnmergeLora needs merged LoRA");
  torch::NoGradGuard no_grad;
  weight.sub_(torch::matmul(lora_b, lora_a) * lora_scale);
  merged = false;
}

// ---- RMSNorm -----------------------------------------------------------------------

RmsNormImpl::RmsNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) {
  // Statistics in fp32 whatever the compute dtype, as the reference does.
  auto xf = x.to(torch::kFloat);
  auto normed = xf * torch::rsqrt(xf.pow(2).mean(-1, true) + eps);
  return weight * normed.to(x.scalar_type());
}

// ---- Attention -----------------------------------------------------------------------

AttentionImpl::AttentionImpl(const ModelConfig& c)
    : heads_(c.num_heads), kv_heads_(c.num_kv_heads), head_dim_(c.head_dim) {
  q = register_module("q", Proj(c.hidden_size, heads_ * head_dim_, c.qkv_bias));
  k = register_module("k", Proj(c.hidden_size, kv_heads_ * head_dim_, c.qkv_bias));
  v = register_module("v", Proj(c.hidden_size, kv_heads_ * head_dim_, c.qkv_bias));
  o = register_module("o", Proj(heads_ * head_dim_, c.hidden_size, false));
}

namespace {

// Writes this call's k/v into the cache and returns all filled slots.
std::pair<torch::Tensor, torch::Tensor> AppendToCache(KvCache* cache, int64_t layer, const torch::Tensor& k,
                                                      const torch::Tensor& v) {
  const int64_t t = k.size(2), start = cache->length;
  DFAR_CHECK(start + t <= cache->capacity, "KV cache overflow: ", start + t, " slots needed, capacity ",
             cache->capacity);
  cache->k[layer].narrow(2, start, t).copy_(k);
  cache->v[layer].narrow(2, start, t).copy_(v);
  return {cache->k[layer].narrow(2, 0, start + t), cache->v[layer].narrow(2, 0, start + t)};
}

torch::Tensor RepeatKv(const torch::Tensor& x, int64_t groups) {
  if (groups == 1) return x;
  const auto b = x.size(0), h = x.size(1), s = x.size(2), d = x.size(3);
  return x.unsqueeze(2).expand({b, h, groups, s, d}).reshape({b, h * groups, s, d});
}

torch::Tensor MathAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const torch::Tensor& mask, bool causal) {
  auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(-1)));
  if (mask.defined()) {
    scores = scores + mask;
  } else if (causal) {
    const int64_t t = q.size(2), s = k.size(2);
    auto upper = torch::ones({t, s}, q.options().dtype(torch::kBool)).triu(s - t + 1);
    scores = scores.masked_fill(upper, -std::numeric_limits<float>::infinity());
  }
  return torch::matmul(torch::softmax(scores.to(torch::kFloat), -1).to(q.scalar_type()), v);
}

}  // namespace

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const AttentionContext& ctx, KvCache* cache,
                                     int64_t layer) {
  const int64_t b = x.size(0), t = x.size(1);
  auto qh = q(x).view({b, t, heads_, head_dim_}).transpose(1, 2);
  auto kh = k(x).view({b, t, kv_heads_, head_dim_}).transpose(1, 2);
  auto vh = v(x).view({b, t, kv_heads_, head_dim_}).transpose(1, 2);
  qh = ApplyRope(qh, ctx.cos, ctx.sin);
  kh = ApplyRope(kh, ctx.cos, ctx.sin);
  if (cache != nullptr) std::tie(kh, vh) = AppendToCache(cache, layer, kh, vh);
  kh = RepeatKv(kh, heads_ / kv_heads_);
  vh = RepeatKv(vh, heads_ / kv_heads_);
  torch::Tensor out = ctx.kernel == AttentionKernel::kSdpa
                          ? compat::ScaledDotProductAttention(qh, kh, vh, ctx.additive_mask, ctx.plain_causal)
                          : MathAttention(qh, kh, vh, ctx.additive_mask, ctx.plain_causal);
  return o(out.transpose(1, 2).reshape({b, t, heads_ * head_dim_}));
}

// ---- MLP and block --------------------------------------------------------------------

MlpImpl::MlpImpl(const ModelConfig& c) {
  gate = register_module("gate", Proj(c.hidden_size, c.intermediate_size, false));
  up = register_module("up", Proj(c.hidden_size, c.intermediate_size, false));
  down = register_module("down", Proj(c.intermediate_size, c.hidden_size, false));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return down(torch::silu(gate(x)) * up(x));
}

BlockImpl::BlockImpl(const ModelConfig& c) {
  attn_norm = register_module("attn_norm", RmsNorm(c.hidden_size, c.rms_norm_eps));
  attn = register_module("attn", Attention(c));
  mlp_norm = register_module("mlp_norm", RmsNorm(c.hidden_size, c.rms_norm_eps));
  mlp = register_module("mlp", Mlp(c));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, const AttentionContext& ctx, KvCache* cache, int64_t layer) {
  auto h = x + attn(attn_norm(x), ctx, cache, layer);
  return h + mlp(mlp_norm(h));
}

// ---- Decoder ---------------------------------------------------------------------------

DecoderImpl::DecoderImpl(const ModelConfig& config) : config_(config) {
  config_.Validate("decoder config");
  embed = register_module("embed", torch::nn::Embedding(config_.vocab_size, config_.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config_.num_layers; ++i) layers->push_back(Block(config_));
  norm = register_module("norm", RmsNorm(config_.hidden_size, config_.rms_norm_eps));
  if (!config_.tie_embeddings)
    lm_head = register_module("lm_head", Proj(config_.hidden_size, config_.vocab_size, false));
  inv_freq_ = register_buffer("inv_freq", RopeInverseFrequencies(config_));
}

namespace {

AttentionContext BuildContext(const DecoderInputs& in, const torch::Tensor& inv_freq, const ModelConfig& c,
                              KvCache* cache, torch::ScalarType dtype, AttentionKernel kernel) {
  AttentionContext ctx;
  ctx.kernel = kernel;
  const int64_t b = in.input_ids.size(0), t = in.input_ids.size(1);
  const int64_t offset = cache ? cache->length : 0;
  const auto long_opts = in.input_ids.options().dtype(torch::kLong);
  auto pos = in.position_ids.defined() ? in.position_ids
                                       : torch::arange(offset, offset + t, long_opts).unsqueeze(0).expand({b, t});
  auto freqs = pos.to(torch::kFloat).unsqueeze(-1) * inv_freq.view({1, 1, -1});
  auto emb = torch::cat({freqs, freqs}, -1).unsqueeze(1);
  ctx.cos = emb.cos().to(dtype);
  ctx.sin = emb.sin().to(dtype);
  auto seg_q = in.segment_ids.defined() ? in.segment_ids : torch::ones({b, t}, long_opts);
  ctx.plain_causal = !in.segment_ids.defined() && cache == nullptr && (c.sliding_window == 0 || t <= c.sliding_window);
  if (ctx.plain_causal) return ctx;
  torch::Tensor seg_k = seg_q;
  if (cache != nullptr) {
    cache->segment_ids.narrow(1, offset, t).copy_(seg_q);
    seg_k = cache->segment_ids.narrow(1, 0, offset + t);
  }
  auto allowed = AllowedMask(seg_q, seg_k, offset, c.sliding_window).unsqueeze(1);
  ctx.additive_mask = torch::zeros(allowed.sizes(), emb.options().dtype(dtype))
                          .masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  return ctx;
}

}  // namespace

torch::Tensor DecoderImpl::forward(const DecoderInputs& in, KvCache* cache) {
  DFAR_CHECK(in.input_ids.dim() == 2, "input_ids must be [batch, seq], got ", in.input_ids.sizes());
  auto x = embed(in.input_ids);
  const auto ctx = BuildContext(in, inv_freq_, config_, cache, x.scalar_type(), kernel_);
  for (int64_t i = 0; i < static_cast<int64_t>(layers->size()); ++i) x = RunBlock(i, x, ctx, cache);
  if (cache != nullptr) cache->length += in.input_ids.size(1);
  return norm(x);
}

torch::Tensor DecoderImpl::RunBlock(int64_t i, const torch::Tensor& x, const AttentionContext& ctx, KvCache* cache) {
  auto block = layers->ptr<BlockImpl>(static_cast<size_t>(i));
  if (checkpointing_ && cache == nullptr && is_training() && torch::GradMode::is_enabled()) {
    // ctx is copied into the closure: backward runs after this call returns.
    auto input = x.requires_grad() ? x : x.detach().requires_grad_(true);
    return CheckpointedCall([block, ctx, i](const torch::Tensor& h) { return block->forward(h, ctx, nullptr, i); },
                            input);
  }
  return block->forward(x, ctx, cache, i);
}

torch::Tensor DecoderImpl::Logits(const torch::Tensor& hidden) {
  if (lm_head) return lm_head(hidden);
  return torch::nn::functional::linear(hidden, embed->weight);
}

KvCache DecoderImpl::NewCache(int64_t batch, int64_t capacity) const {
  KvCache cache;
  const auto opts = embed->weight.options().requires_grad(false);
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    cache.k.push_back(torch::zeros({batch, config_.num_kv_heads, capacity, config_.head_dim}, opts));
    cache.v.push_back(torch::zeros({batch, config_.num_kv_heads, capacity, config_.head_dim}, opts));
  }
  cache.segment_ids = torch::zeros({batch, capacity}, opts.dtype(torch::kLong));
  cache.capacity = capacity;
  return cache;
}

void DecoderImpl::EnableLora(const std::vector<std::string>& targets, int64_t rank, double alpha, double dropout) {
  for (auto& p : parameters()) p.set_requires_grad(false);
  for (const auto& item : layers->children()) {
    auto* block = dynamic_cast<BlockImpl*>(item.get());
    std::map<std::string, Proj> projs = {{"q", block->attn->q},     {"k", block->attn->k},      {"v", block->attn->v},
                                         {"o", block->attn->o},     {"gate", block->mlp->gate}, {"up", block->mlp->up},
                                         {"down", block->mlp->down}};
    for (const auto& name : targets) {
      auto it = projs.find(name);
      DFAR_CHECK(it != projs.end(), "unknown LoRA target '", name, "' (use q, k, v, o, gate, up, down)");
      it->second->EnableLora(rank, alpha, dropout);
      it->second->lora_a.set_requires_grad(true);
      it->second->lora_b.set_requires_grad(true);
    }
  }
}

void DecoderImpl::MergeLora() {
  for (auto& m : modules(false))
    if (auto* p = dynamic_cast<ProjImpl*>(m.get()); p && p->has_lora()) p->MergeLora();
}

void DecoderImpl::UnmergeLora() {
  for (auto& m : modules(false))
    if (auto* p = dynamic_cast<ProjImpl*>(m.get()); p && p->has_lora()) p->UnmergeLora();
}

}  // namespace dfar
