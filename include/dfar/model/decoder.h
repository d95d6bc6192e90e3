// The Llama-family decoder (Llama-2/3, Mistral, Qwen2, SmolLM2) in libtorch.
//
// Owns: the transformer math: token embedding, N blocks of
// (RMSNorm -> GQA attention with RoPE -> residual, RMSNorm -> SwiGLU -> residual),
// final RMSNorm and the LM head (tied to the embedding when configured).
// It knows nothing of ranks, optimizers or files: weights come in through
// named parameters (see name_adapter.h), LoRA lives inside Proj.
//
// Attention masks: a query may attend to a key iff the key is at or before it
// (causal, by slot), both carry the same non-zero segment id, and, with a
// sliding window W, they are fewer than W slots apart. Segment 0 is padding.
// Positions (RoPE) come from position_ids, so packed samples restart at 0.
//
// Thread-safety: a module is used by one thread at a time.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "dfar/model/nf4_linear.h"
#include "dfar/weights/model_config.h"

namespace dfar {

// y = x W^T (+ b) (+ scale * dropout(x) A^T B^T when LoRA is on).
// Where and how a decoder's parameters are created. The default builds fp32
// CPU parameters with the layers' own initialisation (unit tests). Loaders
// pass the compute device and dtype with init = false: the parameters are
// allocated once, uninitialised, where they will live, and the weights are
// copied in one tensor at a time, so no rank holds a full fp32 model on the
// host.
struct ParameterPlacement {
  torch::TensorOptions options = torch::TensorOptions().dtype(torch::kFloat);
  bool init = true;  // false: torch::empty, to be overwritten by the caller.
};

class ProjImpl : public torch::nn::Module {
 public:
  ProjImpl(int64_t in, int64_t out, bool bias, const ParameterPlacement& place = {});
  torch::Tensor forward(const torch::Tensor& x);

  // Adds trainable A [r, in] (Kaiming-uniform) and B [out, r] (zeros), and
  // freezes weight and bias. scale = alpha / r.
  void EnableLora(int64_t rank, double alpha, double dropout);
  bool has_lora() const { return lora_a.defined(); }
  // W += scale * B A, then drop the adapters' effect (merged = true).
  void MergeLora();
  // W -= scale * B A (undo MergeLora).
  void UnmergeLora();
  // QLoRA: stores the frozen weight as NF4 (nf4_linear.h), dequantised per
  // matmul, and frees the dense one (weight becomes a 0-element tensor).
  // MergeLora then writes dequantised W + scale * B A back as a dense weight.
  void QuantizeNf4();

  torch::Tensor weight, bias, lora_a, lora_b;
  std::shared_ptr<Nf4Weight> nf4;  // Set by QuantizeNf4.
  double lora_scale = 0.0;
  double lora_dropout = 0.0;
  bool merged = false;
};
TORCH_MODULE(Proj);

class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(int64_t dim, double eps, const ParameterPlacement& place = {});
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RmsNorm);

// Per-layer key/value cache for incremental decoding. Slots [0, length) are
// filled; segment_ids [B, capacity] marks padding (0) as for inputs.
struct KvCache {
  std::vector<torch::Tensor> k, v;  // [B, kv_heads, capacity, head_dim] per layer.
  torch::Tensor segment_ids;        // [B, capacity] int64.
  int64_t length = 0;
  int64_t capacity = 0;
};

struct AttentionContext;  // Masks and RoPE tables shared by all layers of one call.

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const ModelConfig& c, const ParameterPlacement& place);
  torch::Tensor forward(const torch::Tensor& x, const AttentionContext& ctx, KvCache* cache, int64_t layer);
  Proj q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};

 private:
  int64_t heads_, kv_heads_, head_dim_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(const ModelConfig& c, const ParameterPlacement& place);
  torch::Tensor forward(const torch::Tensor& x);
  Proj gate{nullptr}, up{nullptr}, down{nullptr};
};
TORCH_MODULE(Mlp);

class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const ModelConfig& c, const ParameterPlacement& place);
  torch::Tensor forward(const torch::Tensor& x, const AttentionContext& ctx, KvCache* cache, int64_t layer);
  RmsNorm attn_norm{nullptr}, mlp_norm{nullptr};
  Attention attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(Block);

// One packed sample: `length` slots of row `row` from slot `start`.
struct SegmentSpan {
  int64_t row = 0, start = 0, length = 0;
};

struct DecoderInputs {
  torch::Tensor input_ids;     // [B, T] int64.
  torch::Tensor position_ids;  // [B, T] int64; undefined: 0..T-1 (after the cache).
  torch::Tensor segment_ids;   // [B, T] int64; undefined: one segment, no padding.
  // Packed rows, known on the host: every non-padding segment of
  // segment_ids. With spans (and no cache), SDPA attends within each span
  // with is_causal instead of through a dense [B,1,T,T] mask, so fused
  // (flash / memory-efficient) kernels apply. Padding slots outside every
  // span get a zero attention output (no label reads them).
  std::vector<SegmentSpan> spans;
};

enum class AttentionKernel { kSdpa, kMath };

// Called around each block's forward and before its backward, so that
// parameters can live elsewhere between uses (ZeRO 3: ParameterGather in
// src/train). BeforeBackward runs on autograd's thread, before any of the
// block's backward (and before an activation-checkpointing recompute).
class BlockHooks {
 public:
  virtual ~BlockHooks() = default;
  virtual void BeforeForward(int64_t layer) = 0;
  virtual void AfterForward(int64_t layer) = 0;
  virtual void BeforeBackward(int64_t layer) = 0;
};

class DecoderImpl : public torch::nn::Module {
 public:
  explicit DecoderImpl(const ModelConfig& config, const ParameterPlacement& place = {});

  // Final hidden states [B, T, hidden]. With a cache, appends this call's keys
  // and values to it (the cache must have room).
  torch::Tensor forward(const DecoderInputs& in, KvCache* cache = nullptr);
  // LM head: [..., hidden] -> [..., vocab]. Apply to the rows that need logits
  // only (training: supervised positions; generation: last positions).
  torch::Tensor Logits(const torch::Tensor& hidden);

  // An empty cache for `batch` rows and `capacity` slots, on the model's device/dtype.
  KvCache NewCache(int64_t batch, int64_t capacity) const;

  // Turns LoRA on for the named projections ("q","k","v","o","gate","up","down").
  void EnableLora(const std::vector<std::string>& targets, int64_t rank, double alpha, double dropout);
  void MergeLora();
  void UnmergeLora();
  // QLoRA: every frozen projection of every block (q k v o gate up down)
  // becomes NF4; the embedding, final norm and LM head stay as they are (as
  // in QLoRA). Call after EnableLora and after moving the model to its
  // device and dtype.
  struct QuantizedBase {
    int64_t weights = 0, params = 0, bytes = 0;  // bytes: NF4 storage, constants included.
    int64_t dense_bytes = 0;                     // What the same weights took before.
  };
  QuantizedBase QuantizeBaseNf4();

  const ModelConfig& config() const { return config_; }
  void set_attention_kernel(AttentionKernel k) { kernel_ = k; }
  void set_activation_checkpointing(bool on) { checkpointing_ = on; }
  // Not owned; must outlive every forward and backward (nullptr: none).
  void set_block_hooks(BlockHooks* hooks) { hooks_ = hooks; }

  torch::nn::Embedding embed{nullptr};
  torch::nn::ModuleList layers;
  RmsNorm norm{nullptr};
  Proj lm_head{nullptr};  // nullptr when tied to embed.

 private:
  torch::Tensor RunBlock(int64_t i, const torch::Tensor& x, const AttentionContext& ctx, KvCache* cache);
  torch::Tensor CallBlock(int64_t i, const torch::Tensor& x, const AttentionContext& ctx, KvCache* cache);
  const torch::Tensor& InvFreqOn(const torch::Device& device);

  ModelConfig config_;
  // [head_dim / 2], with rope scaling applied. Always fp32: it is not a
  // registered buffer, so module->to(bf16) cannot round it (a bf16 inv_freq
  // puts angles near position 500 off by up to ~0.5 rad). It follows the
  // model's device at the first forward there.
  torch::Tensor inv_freq_;
  AttentionKernel kernel_ = AttentionKernel::kSdpa;
  bool checkpointing_ = false;
  BlockHooks* hooks_ = nullptr;
};
TORCH_MODULE(Decoder);

// RoPE inverse frequencies with the config's scaling (Llama-3 or none).
torch::Tensor RopeInverseFrequencies(const ModelConfig& c);

}  // namespace dfar
