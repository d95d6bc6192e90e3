// Model helpers that the decoder, training and CUDA path tests share: a
// small long-context decoder, the causal LM loss over a batch, a labelled
// training batch, and a relative error.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "dfar/model/decoder.h"
#include "dfar/train/loss.h"

namespace dfar::testing {

// A training batch of ids [B, T] and labels [B, T] (-100: not supervised),
// with the supervised flat positions and their targets that the loss reads.
inline BatchTensors LabelledBatch(torch::Tensor ids, torch::Tensor labels) {
  BatchTensors b;
  b.input_ids = std::move(ids);
  b.labels = std::move(labels);
  const auto flat = b.labels.reshape({-1});
  b.supervised_rows = flat.ne(-100).nonzero().squeeze(1);
  b.targets = flat.index_select(0, b.supervised_rows);
  return b;
}

// Next-token labels on every position but the last of each row.
inline BatchTensors NextTokenBatch(const torch::Tensor& ids) {
  auto labels = torch::full(ids.sizes(), -100, torch::kLong);
  const int64_t t = ids.size(1);
  labels.narrow(1, 0, t - 1).copy_(ids.narrow(1, 1, t - 1));
  return LabelledBatch(ids, labels);
}

// A 2-layer GQA model (4 heads, 2 KV heads) with a 1024-token context,
// weights N(0, 0.08) and q/k projections N(0, 0.5), so that attention is
// sharp and depends on position; the weights are bf16-representable (an fp32
// copy then differs from a bf16 one only in arithmetic). fp32, CPU.
inline Decoder LongContextDecoder() {
  ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = 96;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.max_position = 1024;
  c.rope_theta = 10000;
  torch::manual_seed(11);
  Decoder d(c);
  torch::NoGradGuard no_grad;
  for (auto& p : d->named_parameters()) {
    if (p.key().find("norm") != std::string::npos) continue;
    const bool qk = p.key().find("attn.q.") != std::string::npos || p.key().find("attn.k.") != std::string::npos;
    p.value().copy_(torch::randn(p.value().sizes()).mul_(qk ? 0.5 : 0.08).to(torch::kBFloat16).to(torch::kFloat));
  }
  return d;
}

// One filler token with a distinct token every 37 slots: late queries then
// attend to keys hundreds of slots back.
inline torch::Tensor SparseMarkerIds(int64_t length) {
  auto ids = torch::full({1, length}, 7, torch::kLong);
  for (int64_t i = 0; i < length; i += 37) ids[0][i] = 3 + i % 5;
  return ids;
}

// Mean next-token cross-entropy of every position.
inline torch::Tensor CausalLoss(Decoder& d, const torch::Tensor& ids) {
  auto hidden = d->forward({ids});
  auto logits = d->Logits(hidden).narrow(1, 0, ids.size(1) - 1);
  auto target = ids.narrow(1, 1, ids.size(1) - 1);
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}).to(torch::kFloat),
                                              target.reshape({-1}));
}

// The trainable (LoRA) gradients of one causal-LM backward of
// LongContextDecoder with LoRA dropout 0.5 on q, v and down, on `device`,
// with activation checkpointing on or off; seeded, so two calls differ only
// in what checkpointing changes. Returned on the CPU.
inline std::vector<torch::Tensor> DropoutLoraGradients(bool checkpointing, const torch::Device& device) {
  Decoder d = LongContextDecoder();
  torch::manual_seed(3);
  d->EnableLora({"q", "v", "down"}, 4, 8.0, 0.5);
  for (auto& p : d->named_parameters())
    if (p.key().find("lora_b") != std::string::npos) p.value().data().normal_(0, 0.1);
  d->to(device);
  d->set_activation_checkpointing(checkpointing);
  d->train();
  torch::manual_seed(4);
  auto ids = torch::randint(0, 96, {2, 24}, torch::kLong).to(device);
  CausalLoss(d, ids).backward();
  std::vector<torch::Tensor> g;
  for (const auto& p : d->named_parameters())
    if (p.value().requires_grad()) g.push_back(p.value().grad().cpu().clone());
  return g;
}

// Relative RMS error of `got` against `want` (any dtypes and devices).
inline double RelativeRms(const torch::Tensor& got, const torch::Tensor& want) {
  auto g = got.to(torch::kCPU, torch::kDouble), w = want.to(torch::kCPU, torch::kDouble);
  return ((g - w).norm() / w.norm()).item<double>();
}

}  // namespace dfar::testing
