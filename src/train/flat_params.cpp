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

int ParameterUnit(const std::string& name) {
  const std::string prefix = "layers.";
  if (name.rfind(prefix, 0) != 0) return 0;
  const size_t dot = name.find('.', prefix.size());
  return std::stoi(name.substr(prefix.size(), dot - prefix.size())) + 1;
}

int64_t Bucket::part() const {
  return (end - begin) / world;
}

FlatParameters::FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params, int world,
                               double bucket_mb, c10::optional<torch::ScalarType> reduce_dtype)
    : FlatParameters(params, FlatLayout{world, 0, bucket_mb, 0, reduce_dtype}) {}

FlatParameters::FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params,
                               const FlatLayout& layout)
    : layout_(layout) {
  DFAR_CHECK(!params.empty(), "there are no trainable parameters");
  DFAR_CHECK(layout_.zero >= 0 && layout_.zero <= 3, "dist.zero must be 0, 1, 2 or 3, got ", layout_.zero);
  DFAR_CHECK(layout_.rank >= 0 && layout_.rank < layout_.world, "rank ", layout_.rank, " outside world ",
             layout_.world);
  dtype_ = params.front().second.scalar_type();
  device_ = params.front().second.device();
  grad_dtype_ = layout_.reduce_dtype ? *layout_.reduce_dtype : dtype_;
  LayOut(params);
  Allocate();
  PointParameters(params);
}

// Buckets from the last parameter backwards; within a bucket, registration
// order. ZeRO 3 starts a new bucket wherever the unit changes and never
// splits a unit.
void FlatParameters::LayOut(const std::vector<std::pair<std::string, torch::Tensor>>& params) {
  const int64_t bucket_elems =
      std::max<int64_t>(1, static_cast<int64_t>(layout_.bucket_mb * 1024 * 1024 / c10::elementSize(dtype_)));
  std::vector<std::vector<size_t>> groups;
  std::vector<int> group_unit;
  int64_t current = 0;
  for (size_t k = params.size(); k-- > 0;) {
    const int64_t n = params[k].second.numel();
    const int unit = shards_parameters() ? ParameterUnit(params[k].first) : 0;
    const bool full = !shards_parameters() && current > 0 && current + n > bucket_elems;
    if (groups.empty() || full || unit != group_unit.back()) {
      groups.emplace_back();
      group_unit.push_back(unit);
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
    bucket.world = layout_.world;
    bucket.unit = group_unit[b];
    bucket.begin = offset;
    for (size_t k : groups[b]) {
      const auto& [name, t] = params[k];
      DFAR_CHECK(t.scalar_type() == dtype_ && t.device() == device_, "parameter '", name,
                 "' differs in dtype or device from the others");
      entries_[k] = {name, std::vector<int64_t>(t.sizes().begin(), t.sizes().end()), offset, t.numel(),
                     DecayApplies(name)};
      entry_bucket_[k] = b;
      bucket.entries.push_back(k);
      offset += t.numel();
    }
    offset = bucket.begin + RoundUp(offset - bucket.begin, layout_.world);
    bucket.end = offset;
    buckets_.push_back(bucket);
  }
  numel_ = offset;
  by_offset_.resize(entries_.size());
  for (size_t k = 0; k < entries_.size(); ++k) by_offset_[k] = k;
  std::sort(by_offset_.begin(), by_offset_.end(),
            [this](size_t a, size_t b) { return entries_[a].offset < entries_[b].offset; });
  if (layout_.zero == 0) {
    owned_.push_back({0, numel_});
  } else {
    for (const auto& b : buckets_) {
      const int64_t begin = b.begin + layout_.rank * b.part();
      owned_.push_back({begin, begin + b.part()});
    }
  }
  for (const auto& [b, e] : owned_) {
    compact_offsets_.push_back(owned_numel_);
    owned_numel_ += e - b;
  }
}

void FlatParameters::Allocate() {
  const auto options = torch::TensorOptions().dtype(dtype_).device(device_);
  if (shards_parameters()) {
    for (const auto& b : buckets_) unit_values_.push_back(torch::zeros({b.end - b.begin}, options));
    owned_values_ = torch::zeros({owned_numel_}, options);
  } else {
    data_ = torch::zeros({numel_}, options);
  }
  if (shards_gradients()) {
    owned_grad_ = torch::zeros({owned_numel_}, options.dtype(grad_dtype_));
    return;
  }
  grad_ = torch::zeros({numel_}, options);
  if (grad_dtype_ != dtype_) main_grad_ = torch::zeros({numel_}, options.dtype(grad_dtype_));
}

// The model's tensors become views of the flat values; with full gradient
// buffers (ZeRO 0/1) their .grad become views too.
void FlatParameters::PointParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params) {
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < params.size(); ++k) {
    torch::Tensor p = params[k].second;
    const FlatEntry& e = entries_[k];
    const Bucket& bucket = buckets_[entry_bucket_[k]];
    auto view = bucket_values(entry_bucket_[k]).narrow(0, e.offset - bucket.begin, e.numel).view(p.sizes());
    view.copy_(p);
    p.set_data(view);
    if (shards_gradients())
      p.mutable_grad().reset();
    else
      p.mutable_grad() = grad_.narrow(0, e.offset, e.numel).view(p.sizes());
  }
  RefreshOwnedValues();
}

torch::Tensor& FlatParameters::data() {
  DFAR_CHECK(data_.defined(), "ZeRO 3 holds no full flat parameter buffer (use owned_values)");
  return data_;
}

torch::Tensor& FlatParameters::grad() {
  DFAR_CHECK(grad_.defined(), "ZeRO ", layout_.zero, " holds no full flat gradient buffer (use owned_grad)");
  return grad_;
}

torch::Tensor& FlatParameters::main_grad() {
  return main_grad_.defined() ? main_grad_ : grad();
}

torch::Tensor FlatParameters::bucket_values(size_t b) {
  if (shards_parameters()) return unit_values_[b];
  const Bucket& bucket = buckets_[b];
  return data_.narrow(0, bucket.begin, bucket.end - bucket.begin);
}

torch::Tensor FlatParameters::owned_values(size_t i) {
  const auto [b, e] = owned_[i];
  if (shards_parameters()) return owned_values_.narrow(0, compact_offsets_[i], e - b);
  return data_.narrow(0, b, e - b);
}

torch::Tensor FlatParameters::owned_grad(size_t i) {
  const auto [b, e] = owned_[i];
  if (shards_gradients()) return owned_grad_.narrow(0, compact_offsets_[i], e - b);
  return main_grad().narrow(0, b, e - b);
}

void FlatParameters::RefreshOwnedValues() {
  if (!shards_parameters()) return;
  torch::NoGradGuard no_grad;
  for (size_t b = 0; b < buckets_.size(); ++b)
    owned_values(b).copy_(unit_values_[b].narrow(0, layout_.rank * buckets_[b].part(), buckets_[b].part()));
}

void FlatParameters::ZeroGradients() {
  if (owned_grad_.defined()) owned_grad_.zero_();
  if (grad_.defined()) grad_.zero_();
  if (main_grad_.defined()) main_grad_.zero_();
}

int64_t FlatParameters::logical_numel() const {
  int64_t n = 0;
  for (const auto& e : entries_) n += e.numel;
  return n;
}

int64_t FlatParameters::parameter_bytes() const {
  if (!shards_parameters()) return data_.nbytes();
  int64_t bytes = owned_values_.nbytes();
  for (const auto& u : unit_values_) bytes += static_cast<int64_t>(u.storage().nbytes());
  return bytes;
}

int64_t FlatParameters::gradient_bytes() const {
  if (shards_gradients()) return owned_grad_.nbytes();
  return grad_.nbytes() + (main_grad_.defined() ? main_grad_.nbytes() : 0);
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
