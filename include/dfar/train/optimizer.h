// AdamW over the owned ranges of FlatParameters, and global-norm clipping.
//
// Matches torch.optim.AdamW (decoupled decay p *= 1 - lr*wd, bias-corrected
// moments, eps added after the square root) so runs compare with PyTorch.
// State (moments, and fp32 master weights when parameters are bf16) exists
// only for this rank's owned ranges: with ZeRO 1/2 that is 1/world of it.
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
  // CPU fp32/bf16: one fused pass over memory per step (3-4x faster than the
  // tensor-op form, which CUDA and tests use). Same math, fp32 throughout.
  bool fused = true;
};

class AdamW {
 public:
  AdamW(FlatParameters& flat, std::vector<std::pair<int64_t, int64_t>> owned, AdamWOptions options);

  // One update of the owned ranges with gradients from flat.grad().
  void Step(double lr);
  int64_t steps() const { return steps_; }
  void set_steps(int64_t s) { steps_ = s; }

  // Compact state over the owned ranges, in range order (for checkpoints).
  torch::Tensor& exp_avg() { return exp_avg_; }
  torch::Tensor& exp_avg_sq() { return exp_avg_sq_; }
  // fp32 master weights; undefined when the parameters are fp32 themselves.
  torch::Tensor& master() { return master_; }
  const std::vector<std::pair<int64_t, int64_t>>& owned() const { return owned_; }
  // Offset of owned range i inside the compact state.
  int64_t compact_offset(size_t i) const { return compact_offsets_[i]; }
  // Copies master weights (if any) back into the compute-dtype parameters.
  void SyncMasterToParams();
  // Bytes of optimizer state held by this rank.
  int64_t state_bytes() const;

 private:
  void SgdStep(double lr);

  FlatParameters& flat_;
  std::vector<std::pair<int64_t, int64_t>> owned_;
  std::vector<int64_t> compact_offsets_;
  AdamWOptions options_;
  torch::Tensor exp_avg_, exp_avg_sq_, master_, decay_;
  int64_t steps_ = 0;
};

// Clips gradients in the owned ranges to a global L2 norm of max_norm
// (0 = no clipping) and returns the pre-clip global norm. The norm is summed
// over ranks when each rank owns a distinct part (`sharded`), else local.
double ClipGradNorm(FlatParameters& flat, const std::vector<std::pair<int64_t, int64_t>>& owned, double max_norm,
                    Communicator& comm, bool sharded);

}  // namespace dfar
