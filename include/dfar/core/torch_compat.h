// The one place where libtorch 1.13 (Debian, CPU: the CI build) and libtorch
// 2.x (pip wheel or GPU hosts, CUDA) differ for dfar. Everything else uses
// the API common to both.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

#include <cstdint>
#if defined(DFAR_TORCH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#endif

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

// Peak bytes that libtorch's CUDA caching allocator has handed to tensors on
// `device` (the aggregate pool's allocated_bytes, index 0 in 1.13 and 2.x);
// -1 when libtorch was built without CUDA (DFAR_TORCH_CUDA unset).
inline int64_t CudaAllocatorPeakBytes(int device) {
#if defined(DFAR_TORCH_CUDA)
  return c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device)).allocated_bytes[0].peak;
#else
  (void)device;
  return -1;
#endif
}

}  // namespace dfar::compat
