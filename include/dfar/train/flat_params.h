// Trainable parameters packed into one flat buffer, in buckets.
//
// Owns: a contiguous buffer holding every trainable parameter (the model's
// tensors become views into it) and a same-shaped gradient buffer (the
// parameters' .grad become views too, so autograd accumulates straight into
// it). The buffer is cut into buckets in reverse registration order (backward
// produces the last layers' gradients first); each bucket is padded to a
// multiple of the world size so it splits into equal per-rank parts for
// ZeRO. Padding is zero and belongs to no parameter.
//
// Why flat: one all-reduce per bucket needs no packing copies; ZeRO shards
// are plain ranges; the optimizer runs as a handful of vector ops.
// Thread-safety: owned by the training thread.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace dfar {

struct FlatEntry {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // In the flat buffer.
  int64_t numel = 0;
  bool decay = true;  // Weight decay applies (not to norms and biases).
};

struct Bucket {
  int64_t begin = 0, end = 0;   // Flat range, padded: (end - begin) % world == 0.
  std::vector<size_t> entries;  // Indices into entries().
  int64_t part() const;         // (end - begin) / world.
  int world = 1;
};

class FlatParameters {
 public:
  // `params`: the trainable (name, tensor) pairs in registration order.
  // They are re-pointed at views of the flat buffers (dtype preserved).
  FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params, int world, double bucket_mb);

  const std::vector<FlatEntry>& entries() const { return entries_; }
  const std::vector<Bucket>& buckets() const { return buckets_; }
  torch::Tensor& data() { return data_; }  // Flat parameters (compute dtype).
  torch::Tensor& grad() { return grad_; }  // Flat gradients (compute dtype).
  int64_t numel() const { return data_.numel(); }
  int64_t logical_numel() const;  // Without padding.
  // A [numel] float mask: 1 where weight decay applies.
  torch::Tensor DecayMask() const;
  // The bucket containing entry i.
  size_t BucketOf(size_t entry) const { return entry_bucket_[entry]; }

 private:
  std::vector<FlatEntry> entries_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> entry_bucket_;
  torch::Tensor data_, grad_;
};

}  // namespace dfar
