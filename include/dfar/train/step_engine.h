// One data-parallel optimizer step, shared by the trainer (src/train) and the
// step benchmark (benchmarks/step), so what is timed is what trains.
//
// Owns, for a model whose trainable parameters are already in place (LoRA
// enabled, device and dtype set): FlatParameters over the trainable
// parameters, GradientSync (ZeRO 0-3), ParameterGather (ZeRO 3: installed
// as the decoder's block hooks) and AdamW. Construction broadcasts rank 0's
// trainable values so every rank starts equal, as DDP does.
// A step is ForwardBackward (micro-batches; the caller supplies the GLOBAL
// supervised-token count, see loss.h) followed by Update (clip, skip a
// non-finite step on every rank, AdamW, ZeRO gather, zero the gradients).
// Also: the model-FLOPs count of a training step, used for MFU and GFLOP/s.
// Thread-safety: training thread only.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dfar/comm/communicator.h"
#include "dfar/model/decoder.h"
#include "dfar/train/flat_params.h"
#include "dfar/train/grad_sync.h"
#include "dfar/train/loss.h"
#include "dfar/train/optimizer.h"
#include "dfar/train/param_gather.h"

namespace dfar {

struct StepEngineOptions {
  int zero = 0;           // ZeRO stage 0-3 (flat_params.h).
  double bucket_mb = 32;  // Gradient bucket size.
  // dist.reduce_dtype fp32: with bf16 parameters, accumulate gradients over
  // micro-steps and reduce them over ranks in fp32 (flat_params.h).
  bool reduce_fp32 = false;
  AdamWOptions adamw;
};

struct StepResult {
  double loss = 0;       // Global mean loss of the step (before its update).
  double grad_norm = 0;  // Global, pre-clip; identical on every rank.
  bool skipped = false;  // Non-finite loss or norm: no update on any rank.
};

class StepEngine {
 public:
  // `tensors` reduces gradients, parameters and the step's loss and norm, on
  // the parameters' device (NCCL for CUDA parameters).
  StepEngine(Decoder decoder, Communicator& tensors, const StepEngineOptions& options);
  ~StepEngine();

  // Forward and backward of each micro-batch with loss = CE sum /
  // global_supervised; the last one's backward overlaps the gradient
  // collectives. Nothing here waits for the device: the loss is summed on it.
  // `poison` makes the loss NaN (fault injection for the non-finite guard).
  void ForwardBackward(const std::vector<BatchTensors>& micro, double global_supervised, bool poison = false);
  // The step's one host synchronisation (loss and gradient norm together),
  // then clipping to grad_clip (0 = off) and AdamW at lr unless the loss or
  // the norm is non-finite; gathers ZeRO parts; zeroes the gradients.
  StepResult Update(double lr, double grad_clip);

  FlatParameters& flat() { return *flat_; }
  AdamW& optimizer() { return *optim_; }
  GradientSync& sync() { return *sync_; }
  ParameterGather* gather() { return gather_.get(); }  // ZeRO 3 only.
  int64_t trainable() const { return flat_->logical_numel(); }

  // ZeRO 3: every parameter gathered between these calls (forward passes
  // that ranks run different numbers of, such as validation on uneven
  // shards). No-ops for ZeRO 0-2.
  void GatherAllParameters();
  void ReleaseAllParameters();
  // The step's reduced gradients by parameter name, fp32 on the host (tests:
  // TrainOptions::observe_gradients). ZeRO 2/3 all-gather the owned parts.
  std::map<std::string, torch::Tensor> FullGradients();

 private:
  Decoder decoder_;
  Communicator& tensors_;
  int zero_;
  torch::Tensor ce_sum_;  // Device fp64: this rank's CE sum of the step so far.
  double global_supervised_ = 1;
  std::unique_ptr<FlatParameters> flat_;
  std::unique_ptr<ParameterGather> gather_;  // Declared after flat_: destroyed first.
  std::unique_ptr<GradientSync> sync_;
  std::unique_ptr<AdamW> optim_;
};

// Model FLOPs of training on one row of `seq` tokens, per token:
//   2 per weight for the forward matmuls, 2 more for input gradients, 2 more
//   for weight gradients of trainable weights (LoRA adapters included), plus
//   attention scores and values (12 L h T: QK^T and AV, forward and both
//   gradients). Activation checkpointing adds one forward (2 N + 4 L h T).
// Weights counted: every projection and the LM head (the embedding matrix
// when tied), not the embedding lookup or norms.
// TrainFlopCounter counts the weights once, for per-step use on a hot path.
class TrainFlopCounter {
 public:
  explicit TrainFlopCounter(Decoder& decoder);
  double PerToken(int64_t seq, bool activation_checkpointing) const;

 private:
  double frozen_ = 0, trainable_ = 0;  // Matmul weights.
  double layers_x_hidden_ = 0;
};
double TrainFlopsPerToken(Decoder& decoder, int64_t seq, bool activation_checkpointing);

}  // namespace dfar
