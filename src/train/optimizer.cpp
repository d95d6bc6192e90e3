#include "dfar/train/optimizer.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "adamw_kernel.h"
#include "dfar/core/error.h"

namespace dfar {
namespace {

// Runs the fused kernel over [0, n) in parallel chunks.
template <typename F>
void ParallelChunks(int64_t n, F&& kernel) {
  at::parallel_for(0, n, int64_t{1} << 15, [&](int64_t begin, int64_t end) { kernel(begin, end - begin); });
}

}  // namespace

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

void AdamW::SgdStep(double lr) {
  for (size_t i = 0; i < owned_.size(); ++i) {
    const auto [b, e] = owned_[i];
    const int64_t c = compact_offsets_[i], n = e - b;
    if (n == 0) continue;
    auto p = master_.defined() ? master_.narrow(0, c, n) : flat_.data().narrow(0, b, n);
    if (options_.weight_decay != 0) p.mul_(1.0 - lr * options_.weight_decay * decay_.narrow(0, c, n));
    p.add_(flat_.grad().narrow(0, b, n).to(torch::kFloat), -lr);
  }
  SyncMasterToParams();
}

void AdamW::Step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  if (options_.sgd) return SgdStep(lr);
  const double bc1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bc2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  const double step_size = lr / bc1;
  const auto dtype = flat_.data().scalar_type();
  if (options_.fused && flat_.data().is_cpu() && (dtype == torch::kFloat || dtype == torch::kBFloat16)) {
    const kernels::AdamWStep k{static_cast<float>(1.0 - options_.beta1),
                               static_cast<float>(options_.beta2),
                               static_cast<float>(1.0 - options_.beta2),
                               static_cast<float>(std::sqrt(bc2)),
                               static_cast<float>(options_.eps),
                               static_cast<float>(step_size),
                               static_cast<float>(lr * options_.weight_decay)};
    for (size_t i = 0; i < owned_.size(); ++i) {
      const auto [b, e] = owned_[i];
      const int64_t c = compact_offsets_[i];
      float* m = exp_avg_.data_ptr<float>() + c;
      float* v = exp_avg_sq_.data_ptr<float>() + c;
      const float* decay = decay_.data_ptr<float>() + c;
      if (dtype == torch::kFloat) {
        float* p = flat_.data().data_ptr<float>() + b;
        const float* g = flat_.grad().data_ptr<float>() + b;
        ParallelChunks(
            e - b, [&](int64_t o, int64_t len) { kernels::AdamWFp32(p + o, g + o, m + o, v + o, decay + o, len, k); });
      } else {
        auto* p = reinterpret_cast<uint16_t*>(flat_.data().data_ptr<at::BFloat16>() + b);
        const auto* g = reinterpret_cast<const uint16_t*>(flat_.grad().data_ptr<at::BFloat16>() + b);
        float* master = master_.data_ptr<float>() + c;
        ParallelChunks(e - b, [&](int64_t o, int64_t len) {
          kernels::AdamWBf16(p + o, g + o, master + o, m + o, v + o, decay + o, len, k);
        });
      }
    }
    return;
  }
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
