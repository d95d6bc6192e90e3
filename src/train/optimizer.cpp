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

AdamW::AdamW(FlatParameters& flat, AdamWOptions options) : flat_(flat), options_(options) {
  for (size_t i = 0; i < flat_.owned().size(); ++i) {
    const auto [b, e] = flat_.owned()[i];
    for (const auto& piece : flat_.PiecesIn(b, e))
      segments_.push_back(
          {i, piece.begin - b, flat_.compact_offset(i) + (piece.begin - b), piece.end - piece.begin, piece.decay});
  }
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(flat_.device());
  exp_avg_ = torch::zeros({flat_.owned_numel()}, f32);
  exp_avg_sq_ = torch::zeros({flat_.owned_numel()}, f32);
  if (flat_.dtype() != torch::kFloat) {
    torch::NoGradGuard no_grad;
    master_ = torch::empty({flat_.owned_numel()}, f32);
    for (size_t i = 0; i < flat_.owned().size(); ++i) {
      auto values = flat_.owned_values(i);
      master_.narrow(0, flat_.compact_offset(i), values.numel()).copy_(values);
    }
  }
}

torch::Tensor AdamW::Values(const Segment& s) {
  return flat_.owned_values(s.range).narrow(0, s.at, s.n);
}

torch::Tensor AdamW::Param(const Segment& s) {
  return master_.defined() ? master_.narrow(0, s.compact, s.n) : Values(s);
}

torch::Tensor AdamW::Grad(const Segment& s) {
  return flat_.owned_grad(s.range).narrow(0, s.at, s.n);
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
  const auto pdtype = flat_.dtype(), gdtype = flat_.grad_dtype();
  if (!options_.fused) return Kernel::kTensorOps;
  if (flat_.device().is_cuda() || options_.torch_fused_on_cpu)
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
  const auto pdtype = flat_.dtype(), gdtype = flat_.grad_dtype();
  for (const Segment& s : segments_) {
    const kernels::AdamWStep& k = s.decay ? decayed : plain;
    float* m = exp_avg_.data_ptr<float>() + s.compact;
    float* v = exp_avg_sq_.data_ptr<float>() + s.compact;
    auto values = Values(s), grad = Grad(s);
    if (pdtype == torch::kFloat) {
      float* p = values.data_ptr<float>();
      const float* g = grad.data_ptr<float>();
      ParallelChunks(s.n, [&](int64_t o, int64_t len) { kernels::AdamWFp32(p + o, g + o, m + o, v + o, len, k); });
      continue;
    }
    auto* p = reinterpret_cast<uint16_t*>(values.data_ptr<at::BFloat16>());
    float* master = master_.data_ptr<float>() + s.compact;
    if (gdtype == torch::kFloat) {
      const float* g = grad.data_ptr<float>();
      ParallelChunks(s.n, [&](int64_t o, int64_t len) {
        kernels::AdamWBf16Fp32Grad(p + o, g + o, master + o, m + o, v + o, len, k);
      });
    } else {
      const auto* g = reinterpret_cast<const uint16_t*>(grad.data_ptr<at::BFloat16>());
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
  const bool same_dtype = flat_.grad_dtype() == torch::kFloat;
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
  for (size_t i = 0; i < flat_.owned().size(); ++i) {
    auto values = flat_.owned_values(i);
    values.copy_(master_.narrow(0, flat_.compact_offset(i), values.numel()));
  }
}

int64_t AdamW::state_bytes() const {
  int64_t bytes = (exp_avg_.numel() + exp_avg_sq_.numel()) * 4;
  if (master_.defined()) bytes += master_.numel() * 4;
  return bytes;
}

// On the CPU, libtorch's fp32 vector norm accumulates sequentially: over
// SmolLM2's 135M gradients it was 1.5% off (1.13), and a clip coefficient
// with it. Sums of squares of chunks of 1M elements (libtorch's sum is
// pairwise: ~1e-8 relative) are exact enough, with a 4 MB temporary. CUDA's
// tree reductions are accurate already: one norm per range there.
constexpr int64_t kNormChunk = int64_t{1} << 20;

torch::Tensor GradSquaredNorm(FlatParameters& flat) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  for (size_t i = 0; i < flat.owned().size(); ++i) {
    const auto g = flat.owned_grad(i);
    if (g.is_cuda()) {
      parts.push_back(at::linalg_vector_norm(g, 2, c10::nullopt, false, torch::kFloat).to(torch::kDouble).pow(2));
      continue;
    }
    for (int64_t at = 0; at < g.numel(); at += kNormChunk)
      parts.push_back(g.narrow(0, at, std::min(kNormChunk, g.numel() - at)).to(torch::kFloat).square().sum());
  }
  if (parts.empty()) return torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(flat.device()));
  return torch::stack(parts).to(torch::kDouble).sum();
}

void ClipGradients(FlatParameters& flat, double norm, double max_norm) {
  if (max_norm <= 0 || !std::isfinite(norm)) return;
  const double coef = max_norm / (norm + 1e-6);
  if (coef >= 1.0) return;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < flat.owned().size(); ++i) flat.owned_grad(i).mul_(coef);
}

}  // namespace dfar
