// DDP-style gradient synchronisation over FlatParameters' buckets, with ZeRO.
//
// Owns: post-accumulate hooks on every trainable parameter. During the final
// micro-step's backward, a bucket whose gradients are all ready starts its
// async collective at once, so communication overlaps the rest of backward.
// Buckets launch strictly in bucket order (a ready bucket waits for earlier
// ones), so every rank issues identical collectives in identical order.
//   ZeRO 0: all-reduce (sum) each bucket; every rank holds full gradients.
//   ZeRO 1: same all-reduce; each rank then updates only its part of every
//           bucket (optimizer state is sharded), and parts are all-gathered.
//   ZeRO 2: reduce-scatter each bucket: a rank receives only its part of the
//           summed gradient. The flat gradient buffers are still full-size
//           on every rank: ZeRO 2 saves communication (no all-reduce),
//           not yet gradient memory.
// Gradients are SUMS over ranks: the loss is already normalised by the global
// supervised-token count, so no averaging is needed (or correct).
// Non-final micro-steps (gradient accumulation) launch nothing.
// With a separate main_grad (flat_params.h: reduce dtype fp32 for bf16
// parameters), each parameter's hook first adds its landed gradient into
// main_grad and clears the compute-dtype slot; buckets reduce main_grad.
// Thread-safety: hooks run on autograd's thread during backward; Wait() and
// the rest on the training thread.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dfar/comm/communicator.h"
#include "dfar/train/flat_params.h"

namespace dfar {

class GradientSync {
 public:
  GradientSync(FlatParameters& flat, Communicator& comm, int zero_stage, const std::vector<torch::Tensor>& params);
  ~GradientSync();

  // Call before each micro-step's backward; `sync` = this is the last micro-step.
  void BeginBackward(bool sync);
  // After backward: launches buckets not yet launched (e.g. unused params)
  // and waits for every collective. Gradients are then final (for ZeRO 2:
  // final in this rank's parts only).
  void Finish();

  // Ranges [begin, end) of the flat buffer this rank updates: everything for
  // ZeRO 0, this rank's part of each bucket otherwise.
  const std::vector<std::pair<int64_t, int64_t>>& owned() const { return owned_; }
  // After the optimizer updated the owned ranges: all-gather parts so every
  // rank holds all parameters again (ZeRO 1 and 2; no-op for 0).
  void GatherParameters();

  int64_t collectives_launched() const { return launched_total_; }

 private:
  void OnGradReady(size_t entry);
  void LaunchReadyInOrder();
  void LaunchBucket(size_t b);
  void RegisterHooks(const std::vector<torch::Tensor>& params);

  FlatParameters& flat_;
  Communicator& comm_;
  int zero_;
  std::vector<std::pair<int64_t, int64_t>> owned_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // Keeps hook targets alive.
  std::mutex mu_;
  bool sync_ = false;
  std::vector<int> pending_;  // Per bucket: gradients still to arrive.
  size_t next_launch_ = 0;    // Buckets [0, next_launch_) are launched.
  std::vector<std::shared_ptr<Work>> works_;
  std::vector<torch::Tensor> scatter_out_;  // ZeRO 2 receive buffers, per bucket.
  std::vector<std::string> bucket_labels_;  // "grad_sync bucket k/n": the collectives' site, for diagnoses.
  int64_t launched_total_ = 0;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // Hooks hold a weak_ptr to it.
};

}  // namespace dfar
