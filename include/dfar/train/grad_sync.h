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
//   ZeRO 2: no full gradient buffer. Each landed gradient is added into its
//           bucket's staging buffer (allocated when the bucket's first
//           gradient lands) and the parameter's .grad is dropped; a complete
//           bucket is reduce-scattered, and its owned part is added into the
//           persistent owned gradient, then the staging is freed. At most
//           kMaxStagedBuckets buckets are staged at once (a launch waits for
//           the oldest beyond that), so gradient memory is the owned 1/N
//           plus a few buckets. This happens in every micro-step: with
//           gradient accumulation, ZeRO 2 reduces each micro-step (as
//           DeepSpeed's stage 2 does) rather than holding full gradients.
//   ZeRO 3: as 2; in addition a bucket whose gradients have all landed is
//           handed to on_bucket_done (ParameterGather frees its values).
// Thread-safety: hooks run on autograd's thread during backward; Wait() and
// the rest on the training thread.
#pragma once

#include <torch/torch.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dfar/comm/communicator.h"
#include "dfar/train/flat_params.h"

namespace dfar {

class GradientSync {
 public:
  static constexpr size_t kMaxStagedBuckets = 2;

  // The ZeRO stage is flat.zero(); `params` are the FlatParameters' own tensors.
  GradientSync(FlatParameters& flat, Communicator& comm, const std::vector<torch::Tensor>& params);
  ~GradientSync();

  // Call before each micro-step's backward; `sync` = this is the last micro-step.
  void BeginBackward(bool sync);
  // After each micro-step's backward: launches buckets not yet launched
  // (e.g. unused parameters) and waits for every collective. ZeRO 0/1 do
  // this on the last micro-step only. Gradients are then final (ZeRO >= 2:
  // in the owned parts, FlatParameters::owned_grad).
  void Finish();

  // ZeRO 1 and 2: after the optimizer updated the owned ranges, all-gathers
  // the parts so every rank holds all parameters again. No-op for 0 and 3
  // (ZeRO 3 gathers a unit when it is used: ParameterGather).
  void GatherParameters();

  // ZeRO 3: called on autograd's thread when bucket b's gradients have all
  // landed in this micro-step.
  void set_on_bucket_done(std::function<void(size_t)> fn) { on_bucket_done_ = std::move(fn); }

  int64_t collectives_launched() const { return launched_total_; }
  // Most bytes of staging buffers alive at once so far (ZeRO 2/3).
  int64_t peak_staging_bytes() const { return peak_staging_bytes_; }

 private:
  void OnGradReady(size_t entry);
  void StageGradient(size_t entry);
  void LaunchReadyInOrder();
  void LaunchBucket(size_t b);
  void CompleteBucket(size_t b);
  void RegisterHooks(const std::vector<torch::Tensor>& params);

  FlatParameters& flat_;
  Communicator& comm_;
  int zero_;
  std::vector<torch::Tensor> params_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // Keeps hook targets alive.
  std::mutex mu_;
  bool sync_ = false;
  std::vector<int> pending_;  // Per bucket: gradients still to arrive.
  size_t next_launch_ = 0;    // Buckets [0, next_launch_) are launched.
  std::vector<std::shared_ptr<Work>> works_;
  std::vector<torch::Tensor> staging_, scatter_out_;  // ZeRO 2/3, per bucket while in flight.
  std::deque<size_t> in_flight_;                      // ZeRO 2/3: launched, not yet completed.
  int64_t staging_bytes_ = 0, peak_staging_bytes_ = 0;
  std::vector<std::string> bucket_labels_;  // "grad_sync bucket k/n": the collectives' site, for diagnoses.
  std::function<void(size_t)> on_bucket_done_;
  int64_t launched_total_ = 0;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // Hooks hold a weak_ptr to it.
};

}  // namespace dfar
