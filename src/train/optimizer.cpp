#include "dfar/train/optimizer.h"

#include <cmath>

#include "dfar/core/error.h"

namespace dfar {

AdamW::AdamW(FlatParameters& flat, std::vector<std::pair<int64_t, int64_t>> owned, AdamWOptions options)
    : flat_(flat), owned_(std::move(owned)), options_(options) {
  int64_t total = 0;
  for (const auto& [b, e] : owned_) {
    compact_offsets_.push_back(total);
    total += e - b;
  }
  const auto f32 = flat_.data().options().dtype(torch::kFloat);
  exp_avg_ = torch::zeros({total}, f32);
  exp_avg_sq_ = torch::zeros({total}, f32);
  auto full_mask = flat_.DecayMask();
  decay_ = torch::empty({total}, f32);
  const bool needs_master = flat_.data().scalar_type() != torch::kFloat;
  if (needs_master) master_ = torch::empty({total}, f32);
  for (size_t i = 0; i < owned_.size(); ++i) {
    const auto [b, e] = owned_[i];
    decay_.narrow(0, compact_offsets_[i], e - b).copy_(full_mask.narrow(0, b, e - b));
    if (needs_master) master_.narrow(0, compact_offsets_[i], e - b).copy_(flat_.data().narrow(0, b, e - b));
  }
}

void AdamW::Step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bc1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bc2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  const double step_size = lr / bc1;
  for (size_t i = 0; i < owned_.size(); ++i) {
    const auto [b, e] = owned_[i];
    const int64_t c = compact_offsets_[i], n = e - b;
    if (n == 0) continue;
    auto p = master_.defined() ? master_.narrow(0, c, n) : flat_.data().narrow(0, b, n);
    auto g = flat_.grad().narrow(0, b, n).to(torch::kFloat);
    auto m = exp_avg_.narrow(0, c, n), v = exp_avg_sq_.narrow(0, c, n);
    if (options_.weight_decay != 0) p.mul_(1.0 - lr * options_.weight_decay * decay_.narrow(0, c, n));
    m.lerp_(g, 1.0 - options_.beta1);
    v.mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
    auto denom = (v.sqrt() / std::sqrt(bc2)).add_(options_.eps);
    p.addcdiv_(m, denom, -step_size);
  }
  SyncMasterToParams();
}

void AdamW::SyncMasterToParams() {
  if (!master_.defined()) return;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < owned_.size(); ++i) {
    const auto [b, e] = owned_[i];
    flat_.data().narrow(0, b, e - b).copy_(master_.narrow(0, compact_offsets_[i], e - b));
  }
}

int64_t AdamW::state_bytes() const {
  int64_t bytes = (exp_avg_.numel() + exp_avg_sq_.numel()) * 4;
  if (master_.defined()) bytes += master_.numel() * 4;
  return bytes;
}

double ClipGradNorm(FlatParameters& flat, const std::vector<std::pair<int64_t, int64_t>>& owned, double max_norm,
                    Communicator& comm, bool sharded) {
  torch::NoGradGuard no_grad;
  double sq = 0.0;
  for (const auto& [b, e] : owned) {
    const double n = flat.grad().narrow(0, b, e - b).norm().item<double>();
    sq += n * n;
  }
  if (sharded && comm.size() > 1) comm.AllReduce(&sq, 1, DType::kFloat64, ReduceOp::kSum);
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && std::isfinite(norm)) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0)
      for (const auto& [b, e] : owned) flat.grad().narrow(0, b, e - b).mul_(coef);
  }
  return norm;
}

}  // namespace dfar
