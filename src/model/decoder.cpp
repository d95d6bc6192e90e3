#include "dfar/model/decoder.h"

#include <cmath>

#include "dfar/core/error.h"
#include "dfar/core/torch_compat.h"
#include "dfar/model/activation_checkpoint.h"

namespace dfar {

// ---- masks and RoPE tables, computed once per forward call --------------------

struct AttentionContext {
  torch::Tensor cos, sin;          // [B, 1, T, head_dim], compute dtype.
  torch::Tensor additive_mask;     // [B, 1, T, S] 0 / -inf; undefined when plain causal or by spans.
  bool plain_causal = false;       // No padding, no segments, no window, no cache.
  std::vector<SegmentSpan> spans;  // Non-empty: causal attention within each span (packed rows).
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

ProjImpl::ProjImpl(int64_t in, int64_t out, bool has_bias, const ParameterPlacement& place) {
  weight = register_parameter("weight", torch::empty({out, in}, place.options));
  if (place.init) torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (has_bias) bias = register_parameter("bias", torch::zeros({out}, place.options));
}

torch::Tensor ProjImpl::forward(const torch::Tensor& x) {
  torch::Tensor y;
  if (nf4) {
    // The NF4 tensors are not buffers (module->to(dtype) would round the
    // fp32 scales): they follow the input's device at first use.
    if (nf4->codes.device() != x.device()) MoveNf4Weight(*nf4, x.device());
    y = Nf4Linear(x, nf4);
    if (bias.defined()) y = y + bias;
  } else {
    y = bias.defined() ? torch::nn::functional::linear(x, weight, bias) : torch::nn::functional::linear(x, weight);
  }
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
  if (nf4) {
    weight.set_data(DequantizeNf4Weight(*nf4, lora_a.scalar_type()));
    nf4.reset();
  }
  weight.add_(torch::matmul(lora_b, lora_a) * lora_scale);
  merged = true;
}

void ProjImpl::QuantizeNf4() {
  DFAR_CHECK(!nf4 && !merged, "QuantizeNf4 needs a dense, unmerged weight");
  DFAR_CHECK(!weight.requires_grad(), "only a frozen weight can be stored as NF4 (enable LoRA first)");
  nf4 = QuantizeNf4Weight(weight);
  weight.set_data(torch::empty({0}, weight.options()));
}

void ProjImpl::UnmergeLora() {
  DFAR_CHECK(has_lora() && merged, "UnmergeLora needs merged LoRA");
  torch::NoGradGuard no_grad;
  weight.sub_(torch::matmul(lora_b, lora_a) * lora_scale);
  merged = false;
}

// ---- RMSNorm -----------------------------------------------------------------------

RmsNormImpl::RmsNormImpl(int64_t dim, double eps_, const ParameterPlacement& place) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}, place.options));
}

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) {
  // Statistics in fp32 whatever the compute dtype, as the reference does.
  auto xf = x.to(torch::kFloat);
  auto normed = xf * torch::rsqrt(xf.pow(2).mean(-1, true) + eps);
  return weight * normed.to(x.scalar_type());
}

// ---- Attention -----------------------------------------------------------------------

AttentionImpl::AttentionImpl(const ModelConfig& c, const ParameterPlacement& place)
    : heads_(c.num_heads), kv_heads_(c.num_kv_heads), head_dim_(c.head_dim) {
  q = register_module("q", Proj(c.hidden_size, heads_ * head_dim_, c.qkv_bias, place));
  k = register_module("k", Proj(c.hidden_size, kv_heads_ * head_dim_, c.qkv_bias, place));
  v = register_module("v", Proj(c.hidden_size, kv_heads_ * head_dim_, c.qkv_bias, place));
  o = register_module("o", Proj(heads_ * head_dim_, c.hidden_size, false, place));
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

// Causal SDPA inside each span; slots outside every span get zeros. Built
// with cat (no in-place writes) so autograd sees one plain graph.
torch::Tensor SpanAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const std::vector<SegmentSpan>& spans, bool gqa) {
  const int64_t b = q.size(0), t = q.size(2);
  std::vector<torch::Tensor> rows;
  size_t next = 0;
  for (int64_t r = 0; r < b; ++r) {
    std::vector<torch::Tensor> pieces;
    int64_t filled = 0;
    for (; next < spans.size() && spans[next].row == r; ++next) {
      const SegmentSpan& s = spans[next];
      DFAR_CHECK(s.start == filled, "packed spans of row ", r, " must be contiguous from slot 0 (span at ", s.start,
                 ", expected ", filled, ")");
      auto slice = [&](const torch::Tensor& x) { return x.narrow(0, r, 1).narrow(2, s.start, s.length); };
      pieces.push_back(compat::ScaledDotProductAttention(slice(q), slice(k), slice(v), {}, /*is_causal=*/true, gqa));
      filled += s.length;
    }
    if (filled < t) pieces.push_back(torch::zeros({1, q.size(1), t - filled, q.size(3)}, q.options()));
    rows.push_back(pieces.size() == 1 ? pieces[0] : torch::cat(pieces, 2));
  }
  DFAR_CHECK(next == spans.size(), "packed spans name rows outside the batch of ", b);
  return b == 1 ? rows[0] : torch::cat(rows, 0);
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
  // Grouped K/V reach SDPA as they are where libtorch takes enable_gqa
  // (>= 2.5); elsewhere, and for the math reference, they are repeated.
  const bool gqa = compat::kSdpaTakesGqa && ctx.kernel == AttentionKernel::kSdpa && heads_ != kv_heads_;
  if (!gqa) {
    kh = RepeatKv(kh, heads_ / kv_heads_);
    vh = RepeatKv(vh, heads_ / kv_heads_);
  }
  torch::Tensor out;
  if (ctx.kernel == AttentionKernel::kMath) {
    out = MathAttention(qh, kh, vh, ctx.additive_mask, ctx.plain_causal);
  } else if (!ctx.spans.empty()) {
    out = SpanAttention(qh, kh, vh, ctx.spans, gqa);
  } else {
    out = compat::ScaledDotProductAttention(qh, kh, vh, ctx.additive_mask, ctx.plain_causal, gqa);
  }
  return o(out.transpose(1, 2).reshape({b, t, heads_ * head_dim_}));
}

// ---- MLP and block --------------------------------------------------------------------

MlpImpl::MlpImpl(const ModelConfig& c, const ParameterPlacement& place) {
  gate = register_module("gate", Proj(c.hidden_size, c.intermediate_size, false, place));
  up = register_module("up", Proj(c.hidden_size, c.intermediate_size, false, place));
  down = register_module("down", Proj(c.intermediate_size, c.hidden_size, false, place));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return down(torch::silu(gate(x)) * up(x));
}

BlockImpl::BlockImpl(const ModelConfig& c, const ParameterPlacement& place) {
  attn_norm = register_module("attn_norm", RmsNorm(c.hidden_size, c.rms_norm_eps, place));
  attn = register_module("attn", Attention(c, place));
  mlp_norm = register_module("mlp_norm", RmsNorm(c.hidden_size, c.rms_norm_eps, place));
  mlp = register_module("mlp", Mlp(c, place));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, const AttentionContext& ctx, KvCache* cache, int64_t layer) {
  auto h = x + attn(attn_norm(x), ctx, cache, layer);
  return h + mlp(mlp_norm(h));
}

// ---- Decoder ---------------------------------------------------------------------------

DecoderImpl::DecoderImpl(const ModelConfig& config, const ParameterPlacement& place) : config_(config) {
  config_.Validate("decoder config");
  auto embed_options = torch::nn::EmbeddingOptions(config_.vocab_size, config_.hidden_size);
  if (!place.init) embed_options._weight(torch::empty({config_.vocab_size, config_.hidden_size}, place.options));
  embed = register_module("embed", torch::nn::Embedding(embed_options));
  if (place.init) {
    torch::NoGradGuard no_grad;
    embed->weight.set_data(embed->weight.to(place.options));
  }
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config_.num_layers; ++i) layers->push_back(Block(config_, place));
  norm = register_module("norm", RmsNorm(config_.hidden_size, config_.rms_norm_eps, place));
  if (!config_.tie_embeddings)
    lm_head = register_module("lm_head", Proj(config_.hidden_size, config_.vocab_size, false, place));
  inv_freq_ = RopeInverseFrequencies(config_);
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
  const bool window_free = c.sliding_window == 0 || t <= c.sliding_window;
  ctx.plain_causal = !in.segment_ids.defined() && cache == nullptr && window_free;
  if (ctx.plain_causal) return ctx;
  if (!in.spans.empty() && cache == nullptr && window_free && kernel == AttentionKernel::kSdpa) {
    ctx.spans = in.spans;
    return ctx;
  }
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
  const auto ctx = BuildContext(in, InvFreqOn(x.device()), config_, cache, x.scalar_type(), kernel_);
  for (int64_t i = 0; i < static_cast<int64_t>(layers->size()); ++i) x = RunBlock(i, x, ctx, cache);
  if (cache != nullptr) cache->length += in.input_ids.size(1);
  return norm(x);
}

const torch::Tensor& DecoderImpl::InvFreqOn(const torch::Device& device) {
  if (inv_freq_.device() != device) inv_freq_ = inv_freq_.to(device);
  return inv_freq_;
}

namespace {

// Identity in forward; its backward calls hooks->BeforeBackward(layer) first.
struct BeforeBackwardCall : public torch::autograd::Function<BeforeBackwardCall> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, int64_t hooks, int64_t layer) {
    ctx->saved_data["hooks"] = hooks;
    ctx->saved_data["layer"] = layer;
    return x.view_as(x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* hooks = reinterpret_cast<BlockHooks*>(ctx->saved_data["hooks"].toInt());
    hooks->BeforeBackward(ctx->saved_data["layer"].toInt());
    return {grads[0], torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor DecoderImpl::RunBlock(int64_t i, const torch::Tensor& x, const AttentionContext& ctx, KvCache* cache) {
  if (hooks_ == nullptr) return CallBlock(i, x, ctx, cache);
  hooks_->BeforeForward(i);
  auto out = CallBlock(i, x, ctx, cache);
  hooks_->AfterForward(i);
  if (!out.requires_grad()) return out;
  return BeforeBackwardCall::apply(out, reinterpret_cast<int64_t>(hooks_), i);
}

torch::Tensor DecoderImpl::CallBlock(int64_t i, const torch::Tensor& x, const AttentionContext& ctx, KvCache* cache) {
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

DecoderImpl::QuantizedBase DecoderImpl::QuantizeBaseNf4() {
  QuantizedBase out;
  for (const auto& item : layers->children()) {
    auto* block = dynamic_cast<BlockImpl*>(item.get());
    for (Proj p : {block->attn->q, block->attn->k, block->attn->v, block->attn->o, block->mlp->gate, block->mlp->up,
                   block->mlp->down}) {
      if (p->weight.requires_grad() || p->nf4) continue;
      out.dense_bytes += p->weight.nbytes();
      p->QuantizeNf4();
      ++out.weights;
      out.params += p->nf4->numel;
      out.bytes += p->nf4->bytes();
    }
  }
  return out;
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
