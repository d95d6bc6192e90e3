#include "dfar/train/flat_params.h"

#include <algorithm>

#include "dfar/core/error.h"

namespace dfar {
namespace {

bool DecayApplies(const std::string& name) {
  return name.find("norm") == std::string::npos && name.find(".bias") == std::string::npos;
}

int64_t RoundUp(int64_t n, int64_t m) {
  return (n + m - 1) / m * m;
}

}  // namespace

int64_t Bucket::part() const {
  return (end - begin) / world;
}

FlatParameters::FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params, int world,
                               double bucket_mb, c10::optional<torch::ScalarType> reduce_dtype) {
  DFAR_CHECK(!params.empty(), "there are no trainable parameters");
  const auto dtype = params.front().second.scalar_type();
  const auto device = params.front().second.device();
  const int64_t bucket_elems =
      std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * 1024 * 1024 / c10::elementSize(dtype)));
  // Lay out buckets from the last parameter backwards; within a bucket, keep
  // registration order.
  std::vector<std::vector<size_t>> groups;
  int64_t current = 0;
  for (size_t k = params.size(); k-- > 0;) {
    const int64_t n = params[k].second.numel();
    if (groups.empty() || (current > 0 && current + n > bucket_elems)) {
      groups.emplace_back();
      current = 0;
    }
    groups.back().insert(groups.back().begin(), k);
    current += n;
  }
  entries_.resize(params.size());
  entry_bucket_.resize(params.size());
  int64_t offset = 0;
  for (size_t b = 0; b < groups.size(); ++b) {
    Bucket bucket;
    bucket.world = world;
    bucket.begin = offset;
    for (size_t k : groups[b]) {
      const auto& [name, t] = params[k];
      DFAR_CHECK(t.scalar_type() == dtype && t.device() == device, "parameter '", name,
                 "' differs in dtype or device from the others");
      entries_[k] = {name, std::vector<int64_t>(t.sizes().begin(), t.sizes().end()), offset, t.numel(),
                     DecayApplies(name)};
      entry_bucket_[k] = b;
      bucket.entries.push_back(k);
      offset += t.numel();
    }
    offset = bucket.begin + RoundUp(offset - bucket.begin, world);
    bucket.end = offset;
    buckets_.push_back(bucket);
  }
  data_ = torch::zeros({offset}, torch::TensorOptions().dtype(dtype).device(device));
  grad_ = torch::zeros_like(data_);
  if (reduce_dtype && *reduce_dtype != dtype)
    main_grad_ = torch::zeros_like(data_, data_.options().dtype(*reduce_dtype));
  by_offset_.resize(entries_.size());
  for (size_t k = 0; k < entries_.size(); ++k) by_offset_[k] = k;
  std::sort(by_offset_.begin(), by_offset_.end(),
            [this](size_t a, size_t b) { return entries_[a].offset < entries_[b].offset; });
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < params.size(); ++k) {
    torch::Tensor p = params[k].second;
    const FlatEntry& e = entries_[k];
    auto view = data_.narrow(0, e.offset, e.numel).view(p.sizes());
    view.copy_(p);
    p.set_data(view);
    p.mutable_grad() = grad_.narrow(0, e.offset, e.numel).view(p.sizes());
  }
}

int64_t FlatParameters::logical_numel() const {
  int64_t n = 0;
  for (const auto& e : entries_) n += e.numel;
  return n;
}

std::vector<FlatParameters::Piece> FlatParameters::PiecesIn(int64_t begin, int64_t end) const {
  std::vector<Piece> pieces;
  auto it = std::lower_bound(by_offset_.begin(), by_offset_.end(), begin,
                             [this](size_t k, int64_t at) { return entries_[k].offset + entries_[k].numel <= at; });
  for (; it != by_offset_.end() && entries_[*it].offset < end; ++it) {
    const FlatEntry& e = entries_[*it];
    const int64_t lo = std::max(begin, e.offset), hi = std::min(end, e.offset + e.numel);
    if (lo < hi) pieces.push_back({lo, hi, e.decay});
  }
  return pieces;
}

}  // namespace dfar
