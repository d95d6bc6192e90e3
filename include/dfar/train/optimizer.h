// AdamW over the owned ranges of FlatParameters, and global-norm clipping.
//
// Matches torch.optim.AdamW (decoupled decay p *= 1 - lr*wd, bias-corrected
// moments, eps added after the square root) so runs compare with PyTorch.
// State (moments, and fp32 master weights when parameters are bf16) exists
// only for this rank's owned ranges (FlatParameters::owned): with ZeRO >= 1
// that is 1/world of it.
// Weight decay is a flag per parameter piece (FlatParameters::PiecesIn), not
// a full-size mask. Parameters and gradients are the owned ranges'
// (FlatParameters::owned_values, owned_grad), whatever the ZeRO stage.
// Kernels: on CUDA (libtorch >= 2.0) torch's own _fused_adamw_, the kernel
// of torch.optim.AdamW(fused=True), one launch per decay class; bf16
// gradients are staged to fp32 in pieces of at most 16M elements. On CPU a
// fused loop of dfar's (adamw_kernel.h). Elsewhere, and with fused = false,
// the tensor-op form.
// Thread-safety: training thread only.
#pragma once

#include <torch/torch.h>

#include <utility>
#include <vector>

#include "dfar/comm/communicator.h"
#include "dfar/train/flat_params.h"

namespace dfar {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;
  // Plain SGD instead (p -= lr * (g + wd * p), decay mask as for AdamW);
  // the moments are kept, as zeros, so the checkpoint layout is one.
  bool sgd = false;
  // One fused pass over memory per step: dfar's loop on CPU (3-4x faster
  // than the tensor-op form), torch's _fused_adamw_ on CUDA. Same math,
  // fp32 throughout. false: the tensor-op form (tests).
  bool fused = true;
  // Use torch's _fused_adamw_ on CPU too (libtorch >= 2.4): tests check the
  // CUDA path's calling convention against dfar's CPU loop this way.
  bool torch_fused_on_cpu = false;
};

class AdamW {
 public:
  AdamW(FlatParameters& flat, AdamWOptions options);

  // One update of the owned ranges with their gradients.
  void Step(double lr);
  int64_t steps() const { return steps_; }
  void set_steps(int64_t s) { steps_ = s; }

  // Compact state over the owned ranges, in range order (for checkpoints).
  torch::Tensor& exp_avg() { return exp_avg_; }
  torch::Tensor& exp_avg_sq() { return exp_avg_sq_; }
  // fp32 master weights; undefined when the parameters are fp32 themselves.
  torch::Tensor& master() { return master_; }
  const std::vector<std::pair<int64_t, int64_t>>& owned() const { return flat_.owned(); }
  // Offset of owned range i inside the compact state.
  int64_t compact_offset(size_t i) const { return flat_.compact_offset(i); }
  // Copies master weights (if any) back into the compute-dtype parameters.
  void SyncMasterToParams();
  // Bytes of optimizer state held by this rank.
  int64_t state_bytes() const;

 private:
  // One parameter piece inside an owned range: the range, the offset in it,
  // the offset in the compact state, length, and whether weight decay applies.
  struct Segment {
    size_t range = 0;
    int64_t at = 0, compact = 0, n = 0;
    bool decay = true;
  };
  enum class Kernel { kCpuFused, kTorchFused, kTensorOps };
  Kernel ChooseKernel() const;
  void SgdStep(double lr);
  void CpuFusedStep(double lr);
  void TorchFusedStep(double lr);
  void TensorOpsStep(double lr);
  torch::Tensor Param(const Segment& s);   // Master or fp32 parameters of s.
  torch::Tensor Values(const Segment& s);  // Parameters of s in their own dtype.
  torch::Tensor Grad(const Segment& s);    // Gradient of s.

  FlatParameters& flat_;
  std::vector<Segment> segments_;
  AdamWOptions options_;
  torch::Tensor exp_avg_, exp_avg_sq_, master_;
  torch::Tensor step_tensor_, stage_;  // Torch fused kernel: step count on the device, fp32 gradient stage.
  int64_t steps_ = 0;
};

// Squared L2 norm of the owned gradients, as a device fp64 scalar: one
// stacked reduction, no host synchronisation.
torch::Tensor GradSquaredNorm(FlatParameters& flat);
// Scales the owned gradients so that a global norm `norm` becomes max_norm
// (no-op when max_norm is 0, the norm is within it, or non-finite).
void ClipGradients(FlatParameters& flat, double norm, double max_norm);

}  // namespace dfar
