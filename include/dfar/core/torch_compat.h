// The one place where libtorch 1.13 (Debian, CPU: the CI build) and libtorch
// 2.x (pip wheel or GPU hosts, CUDA) differ for dfar. Everything else uses
// the API common to both.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

namespace dfar::compat {

constexpr bool kTorch2 = TORCH_VERSION_MAJOR >= 2;

// Fused attention with an additive float mask [B,1|H,T,S] (or undefined).
// 2.x: at::scaled_dot_product_attention; 1.13: the then-private
// at::_scaled_dot_product_attention, which returns (out, weights).
inline at::Tensor ScaledDotProductAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                            const at::Tensor& additive_mask, bool is_causal) {
  c10::optional<at::Tensor> mask;
  if (additive_mask.defined()) mask = additive_mask;
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, mask, 0.0, is_causal);
#else
  return std::get<0>(at::_scaled_dot_product_attention(q, k, v, mask, 0.0, false, is_causal));
#endif
}

// CUDA availability without requiring a CUDA build.
inline int CudaDeviceCount() {
  return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
}

}  // namespace dfar::compat
