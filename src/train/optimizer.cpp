#include "dfar/train/optimizer.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "adamw_kernel.h"
#include "dfar/core/error.h"
#include "dfar/core/torch_compat.h"

namespace dfar {
namespace {

// Runs the fused kernel over [0, n) in parallel chunks.
template <typename F>
void ParallelChunks(int64_t n, F&& kernel) {
  at::parallel_for(0, n, int64_t{1} << 15, [&](int64_t begin, int64_t end) { kernel(begin, end - begin); });
}

// fp32 gradients converted for torch's fused kernel are staged in pieces of
// at most this many elements (64 MB), never a full-size copy.
constexpr int64_t kStageElems = int64_t{1} << 24;

}  // namespace

AdamW::AdamW(FlatParameters& flat, std::vector<std::pair<int64_t, int64_t>> owned, AdamWOptions options)
    : flat_(flat), owned_(std::move(owned)), options_(options) {
  int64_t total = 0;
  for (const auto& [b, e] : owned_) {
    compact_offsets_.push_back(total);
    for (const auto& piece : flat_.PiecesIn(b, e))
      segments_.push_back({piece.begin, total + (piece.begin - b), piece.end - piece.begin, piece.decay});
    total += e - b;
  }
  const auto f32 = flat_.data().options().dtype(torch::kFloat);
  exp_avg_ = torch::zeros({total}, f32);
  exp_avg_sq_ = torch::zeros({total}, f32);
  if (flat_.data().scalar_type() != torch::kFloat) {
    torch::NoGradGuard no_grad;
    master_ = torch::empty({total}, f32);
    for (size_t i = 0; i < owned_.size(); ++i) {
      const auto [b, e] = owned_[i];
      master_.narrow(0, compact_offsets_[i], e - b).copy_(flat_.data().narrow(0, b, e - b));
    }
  }
}

torch::Tensor AdamW::Param(const Segment& s) {
  return master_.defined() ? master_.narrow(0, s.compact, s.n) : flat_.data().narrow(0, s.flat, s.n);
}

torch::Tensor AdamW::Grad(const Segment& s) {
  return flat_.main_grad().narrow(0, s.flat, s.n);
}

void AdamW::SgdStep(double lr) {
  for (const Segment& s : segments_) {
    auto p = Param(s);
    if (options_.weight_decay != 0 && s.decay) p.mul_(1.0 - lr * options_.weight_decay);
    p.add_(Grad(s), -lr);
  }
  SyncMasterToParams();
}

AdamW::Kernel AdamW::ChooseKernel() const {
  const auto pdtype = flat_.data().scalar_type(), gdtype = flat_.main_grad().scalar_type();
  if (!options_.fused) return Kernel::kTensorOps;
  if (flat_.data().is_cuda() || options_.torch_fused_on_cpu)
    return compat::kHasFusedAdamW ? Kernel::kTorchFused : Kernel::kTensorOps;
  const bool cpu_ok = (pdtype == torch::kFloat && gdtype == torch::kFloat) ||
                      (pdtype == torch::kBFloat16 && (gdtype == torch::kBFloat16 || gdtype == torch::kFloat));
  return cpu_ok ? Kernel::kCpuFused : Kernel::kTensorOps;
}

void AdamW::Step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  if (options_.sgd) return SgdStep(lr);
  switch (ChooseKernel()) {
    case Kernel::kCpuFused:
      CpuFusedStep(lr);
      return;
    case Kernel::kTorchFused:
      TorchFusedStep(lr);
      break;
    case Kernel::kTensorOps:
      TensorOpsStep(lr);
      break;
  }
  SyncMasterToParams();
}

void AdamW::CpuFusedStep(double lr) {
  const double bc2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  const double step_size = lr / (1.0 - std::pow(options_.beta1, static_cast<double>(steps_)));
  const kernels::AdamWStep decayed{static_cast<float>(1.0 - options_.beta1),
                                   static_cast<float>(options_.beta2),
                                   static_cast<float>(1.0 - options_.beta2),
                                   static_cast<float>(std::sqrt(bc2)),
                                   static_cast<float>(options_.eps),
                                   static_cast<float>(step_size),
                                   static_cast<float>(lr * options_.weight_decay)};
  kernels::AdamWStep plain = decayed;
  plain.lr_wd = 0.0f;
  const auto pdtype = flat_.data().scalar_type(), gdtype = flat_.main_grad().scalar_type();
  for (const Segment& s : segments_) {
    const kernels::AdamWStep& k = s.decay ? decayed : plain;
    float* m = exp_avg_.data_ptr<float>() + s.compact;
    float* v = exp_avg_sq_.data_ptr<float>() + s.compact;
    if (pdtype == torch::kFloat) {
      float* p = flat_.data().data_ptr<float>() + s.flat;
      const float* g = flat_.main_grad().data_ptr<float>() + s.flat;
      ParallelChunks(s.n, [&](int64_t o, int64_t len) { kernels::AdamWFp32(p + o, g + o, m + o, v + o, len, k); });
      continue;
    }
    auto* p = reinterpret_cast<uint16_t*>(flat_.data().data_ptr<at::BFloat16>() + s.flat);
    float* master = master_.data_ptr<float>() + s.compact;
    if (gdtype == torch::kFloat) {
      const float* g = flat_.main_grad().data_ptr<float>() + s.flat;
      ParallelChunks(s.n, [&](int64_t o, int64_t len) {
        kernels::AdamWBf16Fp32Grad(p + o, g + o, master + o, m + o, v + o, len, k);
      });
    } else {
      const auto* g = reinterpret_cast<const uint16_t*>(flat_.main_grad().data_ptr<at::BFloat16>() + s.flat);
      ParallelChunks(
          s.n, [&](int64_t o, int64_t len) { kernels::AdamWBf16(p + o, g + o, master + o, m + o, v + o, len, k); });
    }
  }
}

// torch.optim.AdamW(fused=True)'s kernel: one launch per decay class when the
// gradients already have the master's dtype (fp32), else one per staged
// piece of at most kStageElems converted elements.
void AdamW::TorchFusedStep(double lr) {
  if (!step_tensor_.defined()) step_tensor_ = torch::zeros({}, exp_avg_.options());
  step_tensor_.fill_(static_cast<double>(steps_));
  const bool same_dtype = flat_.main_grad().scalar_type() == torch::kFloat;
  for (bool decay : {true, false}) {
    const double wd = decay ? options_.weight_decay : 0.0;
    std::vector<torch::Tensor> p, g, m, v, steps;
    for (const Segment& s : segments_) {
      if (s.decay != decay) continue;
      for (int64_t o = 0; o < s.n; o += same_dtype ? s.n : kStageElems) {
        const int64_t n = same_dtype ? s.n : std::min(kStageElems, s.n - o);
        auto grad = Grad(s).narrow(0, o, n);
        if (!same_dtype) {
          if (!stage_.defined()) stage_ = torch::empty({std::min(kStageElems, exp_avg_.numel())}, exp_avg_.options());
          grad = stage_.narrow(0, 0, n).copy_(grad);
        }
        p.push_back(Param(s).narrow(0, o, n));
        g.push_back(grad);
        m.push_back(exp_avg_.narrow(0, s.compact + o, n));
        v.push_back(exp_avg_sq_.narrow(0, s.compact + o, n));
        steps.push_back(step_tensor_);
        if (!same_dtype) {  // The stage is reused: run this piece now.
          compat::FusedAdamW(p, g, m, v, steps, lr, options_.beta1, options_.beta2, wd, options_.eps);
          p.clear(), g.clear(), m.clear(), v.clear(), steps.clear();
        }
      }
    }
    if (!p.empty()) compat::FusedAdamW(p, g, m, v, steps, lr, options_.beta1, options_.beta2, wd, options_.eps);
  }
}

void AdamW::TensorOpsStep(double lr) {
  const double bc1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bc2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  for (const Segment& s : segments_) {
    auto p = Param(s);
    auto g = Grad(s).to(torch::kFloat);
    auto m = exp_avg_.narrow(0, s.compact, s.n), v = exp_avg_sq_.narrow(0, s.compact, s.n);
    if (options_.weight_decay != 0 && s.decay) p.mul_(1.0 - lr * options_.weight_decay);
    m.lerp_(g, 1.0 - options_.beta1);
    v.mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
    auto denom = (v.sqrt() / std::sqrt(bc2)).add_(options_.eps);
    p.addcdiv_(m, denom, -lr / bc1);
  }
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

torch::Tensor GradSquaredNorm(FlatParameters& flat, const std::vector<std::pair<int64_t, int64_t>>& owned) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  for (const auto& [b, e] : owned)
    norms.push_back(
        at::linalg_vector_norm(flat.main_grad().narrow(0, b, e - b), 2, c10::nullopt, false, torch::kFloat));
  return torch::stack(norms).to(torch::kDouble).pow(2).sum();
}

void ClipGradients(FlatParameters& flat, const std::vector<std::pair<int64_t, int64_t>>& owned, double norm,
                   double max_norm) {
  if (max_norm <= 0 || !std::isfinite(norm)) return;
  const double coef = max_norm / (norm + 1e-6);
  if (coef >= 1.0) return;
  torch::NoGradGuard no_grad;
  for (const auto& [b, e] : owned) flat.main_grad().narrow(0, b, e - b).mul_(coef);
}

}  // namespace dfar
