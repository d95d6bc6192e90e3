#include "dfar/train/param_gather.h"

#include <chrono>

#include "comm_dtype.h"
#include "dfar/comm/watchdog.h"
#include "dfar/core/error.h"
#include "dfar/core/torch_compat.h"

namespace dfar {

ParameterGather::ParameterGather(FlatParameters& flat, Communicator& comm, int64_t num_layers)
    : flat_(flat), comm_(comm) {
  DFAR_CHECK(flat_.shards_parameters(), "ParameterGather needs ZeRO-3 flat parameters");
  unit_buckets_.resize(static_cast<size_t>(num_layers + 1));
  for (size_t b = 0; b < flat_.buckets().size(); ++b) {
    const int unit = flat_.buckets()[b].unit;
    DFAR_CHECK(unit >= 0 && unit <= num_layers, "bucket ", b, " belongs to layer ", unit - 1, " of ", num_layers);
    unit_buckets_[static_cast<size_t>(unit)].push_back(b);
  }
  users_.assign(flat_.buckets().size(), 0);
  resident_.assign(flat_.buckets().size(), true);  // FlatParameters starts with full values.
  works_.resize(flat_.buckets().size());
  for (size_t b = 0; b < flat_.buckets().size(); ++b) bytes_ += flat_.bucket_values(b).nbytes();
  peak_bytes_ = bytes_;
}

ParameterGather::~ParameterGather() {
  for (auto& w : works_)
    if (w) w->Wait();
}

const std::vector<size_t>& ParameterGather::BucketsOf(int64_t unit) const {
  static const std::vector<size_t> none;
  if (unit < 0 || unit >= static_cast<int64_t>(unit_buckets_.size())) return none;
  return unit_buckets_[static_cast<size_t>(unit)];
}

void ParameterGather::Launch(size_t b) {
  auto values = flat_.bucket_values(b);
  compat::ResizeStorageBytes(values, static_cast<size_t>(values.numel()) * values.element_size());
  bytes_ += values.nbytes();
  peak_bytes_ = std::max(peak_bytes_, bytes_);
  resident_[b] = true;
  ++gathers_;
  auto mine = flat_.owned_values(b);
  if (comm_.size() == 1) {
    torch::NoGradGuard no_grad;
    values.copy_(mine);
    return;
  }
  CollectiveSite site("zero-3 parameter gather");
  works_[b] = comm_.AllGatherAsync(mine.data_ptr(), values.data_ptr(), static_cast<size_t>(mine.numel()),
                                   CommDTypeOf(flat_.dtype(), "parameters"));
}

void ParameterGather::WaitFor(size_t b) {
  if (!works_[b]) return;
  const auto start = std::chrono::steady_clock::now();
  works_[b]->Wait();
  works_[b].reset();
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void ParameterGather::Free(size_t b) {
  WaitFor(b);
  auto values = flat_.bucket_values(b);
  bytes_ -= values.nbytes();
  compat::ResizeStorageBytes(values, 0);
  resident_[b] = false;
}

void ParameterGather::Acquire(int64_t unit) {
  for (size_t b : BucketsOf(unit)) {
    if (!resident_[b]) Launch(b);
    WaitFor(b);
    ++users_[b];
  }
}

void ParameterGather::Prefetch(int64_t unit) {
  for (size_t b : BucketsOf(unit))
    if (!resident_[b]) Launch(b);
}

void ParameterGather::Release(int64_t unit) {
  for (size_t b : BucketsOf(unit)) {
    DFAR_CHECK(users_[b] > 0, "ZeRO-3 bucket ", b, " released more often than gathered");
    if (--users_[b] == 0 && !all_held_) Free(b);
  }
}

void ParameterGather::BeginMicroStep() {
  std::lock_guard<std::mutex> lock(mu_);
  Acquire(0);
}

void ParameterGather::FinishMicroStep() {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t b = 0; b < users_.size(); ++b) {
    users_[b] = 0;
    if (resident_[b] && !all_held_) Free(b);
  }
}

void ParameterGather::GatherAll() {
  std::lock_guard<std::mutex> lock(mu_);
  all_held_ = true;
  for (size_t b = 0; b < resident_.size(); ++b)
    if (!resident_[b]) Launch(b);
  for (size_t b = 0; b < resident_.size(); ++b) WaitFor(b);
}

void ParameterGather::ReleaseAll() {
  std::lock_guard<std::mutex> lock(mu_);
  all_held_ = false;
  for (size_t b = 0; b < resident_.size(); ++b) {
    users_[b] = 0;
    if (resident_[b]) Free(b);
  }
}

void ParameterGather::BeforeForward(int64_t layer) {
  std::lock_guard<std::mutex> lock(mu_);
  Acquire(layer + 1);
  if (torch::GradMode::is_enabled()) Prefetch(layer + 2);
}

void ParameterGather::AfterForward(int64_t layer) {
  std::lock_guard<std::mutex> lock(mu_);
  Release(layer + 1);
}

void ParameterGather::BeforeBackward(int64_t layer) {
  std::lock_guard<std::mutex> lock(mu_);
  Acquire(layer + 1);
  if (layer > 0) Prefetch(layer);
}

void ParameterGather::OnBucketDone(size_t bucket) {
  std::lock_guard<std::mutex> lock(mu_);
  if (users_[bucket] > 0 && --users_[bucket] == 0 && !all_held_) Free(bucket);
}

}  // namespace dfar
