// The one place where libtorch 1.13 (Debian, CPU: the CI build) and libtorch
// 2.x (pip wheel or GPU hosts, CUDA) differ for dfar. Everything else uses
// the API common to both.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

#include <cstdint>
#include <mutex>
#if defined(DFAR_TORCH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace dfar::compat {

constexpr bool kTorch2 = TORCH_VERSION_MAJOR >= 2;
// SDPA's enable_gqa (K/V with fewer heads than Q, no copy) arrived in 2.5.
constexpr bool kSdpaTakesGqa = TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5);
// SDPA has fused kernels that run without a mask (flash / memory-efficient
// on CUDA, flash on CPU since 2.2), so packed batches attend by per-sample
// spans there; 1.13 has only the math path, where one dense-mask call is
// faster (benchmarks/attention: SmolLM2-135M fp32, 4 x 512 packed tokens,
// forward + backward on 2 cores: spans 0.81x the dense mask's speed on 1.13,
// 1.07x on 2.11; docs/benchmarks.md).
constexpr bool kSdpaFusedWithoutMask = kTorch2;
// at::_fused_adamw_ (CUDA since 2.0, CPU since 2.4).
constexpr bool kHasFusedAdamW = kTorch2;

// Fused attention with an additive float mask [B,1|H,T,S] (or undefined).
// 2.x: at::scaled_dot_product_attention; 1.13: the then-private
// at::_scaled_dot_product_attention, which returns (out, weights).
// `gqa`: k and v carry H/g heads; only where kSdpaTakesGqa.
inline at::Tensor ScaledDotProductAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                            const at::Tensor& additive_mask, bool is_causal, bool gqa = false) {
  c10::optional<at::Tensor> mask;
  if (additive_mask.defined()) mask = additive_mask;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
  return at::scaled_dot_product_attention(q, k, v, mask, 0.0, is_causal, c10::nullopt, gqa);
#elif TORCH_VERSION_MAJOR >= 2
  TORCH_CHECK(!gqa, "SDPA enable_gqa needs libtorch >= 2.5");
  return at::scaled_dot_product_attention(q, k, v, mask, 0.0, is_causal);
#else
  TORCH_CHECK(!gqa, "SDPA enable_gqa needs libtorch >= 2.5");
  return std::get<0>(at::_scaled_dot_product_attention(q, k, v, mask, 0.0, false, is_causal));
#endif
}

// One AdamW step of torch.optim.AdamW(fused=True) over tensor lists (all of
// one dtype and device; `steps` are fp32 scalars on that device, already
// incremented for this step). libtorch 2.x only: callers check kHasFusedAdamW.
inline void FusedAdamW(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                       at::TensorList steps, double lr, double beta1, double beta2, double weight_decay, double eps) {
#if TORCH_VERSION_MAJOR >= 2
  at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr, beta1, beta2, weight_decay,
                    eps, /*amsgrad=*/false, /*maximize=*/false);
#else
  (void)params, (void)grads, (void)exp_avgs, (void)exp_avg_sqs, (void)steps, (void)lr, (void)beta1, (void)beta2,
      (void)weight_decay, (void)eps;
  TORCH_CHECK(false, "fused AdamW needs libtorch >= 2.0");
#endif
}

// TF32 tensor cores for fp32 matmuls and convolutions on CUDA (a no-op
// without CUDA). Process-wide.
inline void SetAllowTf32(bool on) {
  at::globalContext().setAllowTF32CuBLAS(on);
  at::globalContext().setAllowTF32CuDNN(on);
}

// The default RNG of `device` (CPU, or a CUDA device: dropout's generator),
// as its serialised state; and back.
inline at::Tensor RngState(const c10::Device& device) {
  auto gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}
inline void SetRngState(const c10::Device& device, const at::Tensor& state) {
  auto gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
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

// Gives t's storage `bytes` of fresh, uninitialised memory from its own
// allocator (0: frees it), keeping the StorageImpl, so every tensor viewing
// it (parameters, autograd's saved references) sees the new memory. What
// FSDP does with untyped_storage().resize_(); the same calls in 1.13 and 2.x.
inline void ResizeStorageBytes(const at::Tensor& t, size_t bytes) {
  c10::StorageImpl* storage = t.storage().unsafeGetStorageImpl();
  storage->set_data_ptr_noswap(storage->allocator()->allocate(bytes));
  storage->set_nbytes(bytes);
}

}  // namespace dfar::compat
