// ZeRO 3: parameters gathered for a block's use and freed after it.
//
// Owns: the residency of every ZeRO-3 bucket's full values
// (FlatParameters::bucket_values). A bucket's storage is allocated and
// all-gathered from the ranks' owned parts when its unit is used, and its
// storage is resized to 0 bytes when no one needs it, so outside their use
// only the owned 1/N of the parameters persists. Freeing the storage (not
// the tensor) keeps the model's parameter views and autograd's saved
// references valid: the next gather refills the same storage in place.
//
// Schedule, per micro-step (the decoder calls the BlockHooks):
//   BeginMicroStep   gathers the root unit (embedding, final norm, head),
//                    held until its gradients land;
//   BeforeForward l  waits for layer l (gathering it if needed) and starts
//                    layer l+1's gather, which overlaps layer l's compute;
//   AfterForward l   frees layer l;
//   BeforeBackward l gathers layer l again and starts layer l-1's gather;
//   bucket done      (GradientSync: all its gradients landed) frees it;
//   FinishMicroStep  frees whatever is left (prefetched or unused).
// Buckets are counted by users, so an activation-checkpointing recompute
// inside backward finds its layer gathered. GatherAll/ReleaseAll hold every
// bucket (forward passes whose count differs across ranks: validation).
// Every rank issues the same gathers in the same order: the schedule
// depends only on the model's structure.
// Thread-safety: hooks run on the training thread (forward) and autograd's
// thread (backward, bucket done); an internal mutex serialises them.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "dfar/comm/communicator.h"
#include "dfar/model/decoder.h"
#include "dfar/train/flat_params.h"

namespace dfar {

class ParameterGather : public BlockHooks {
 public:
  ParameterGather(FlatParameters& flat, Communicator& comm, int64_t num_layers);
  ~ParameterGather() override;

  void BeginMicroStep();
  void FinishMicroStep();
  void GatherAll();
  void ReleaseAll();

  void BeforeForward(int64_t layer) override;
  void AfterForward(int64_t layer) override;
  void BeforeBackward(int64_t layer) override;
  void OnBucketDone(size_t bucket);

  int64_t gathers_launched() const { return gathers_; }
  // Seconds the caller spent blocked on a gather it needed (the part of the
  // gathers not hidden behind compute), and on gathers of GatherAll.
  double wait_seconds() const { return wait_seconds_; }
  // Most bytes of gathered bucket values alive at once since ResetPeak (or
  // construction, when every bucket is full).
  int64_t peak_gathered_bytes() const { return peak_bytes_; }
  void ResetPeak() { peak_bytes_ = bytes_; }

 private:
  const std::vector<size_t>& BucketsOf(int64_t unit) const;
  void Acquire(int64_t unit);
  void Prefetch(int64_t unit);
  void Release(int64_t unit);
  void Launch(size_t b);
  void WaitFor(size_t b);
  void Free(size_t b);

  FlatParameters& flat_;
  Communicator& comm_;
  std::vector<std::vector<size_t>> unit_buckets_;  // Unit (0 root, l + 1 layer l) -> buckets.
  std::vector<int> users_;
  std::vector<bool> resident_;
  std::vector<std::shared_ptr<Work>> works_;
  std::mutex mu_;
  bool all_held_ = false;
  int64_t gathers_ = 0, bytes_ = 0, peak_bytes_ = 0;
  double wait_seconds_ = 0;
};

}  // namespace dfar
