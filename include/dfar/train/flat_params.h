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
//
// Reduce dtype: with bf16 parameters and reduce_dtype fp32, a second, fp32
// buffer (main_grad) is where gradients accumulate across micro-steps and
// are reduced across ranks; autograd still writes bf16 into grad(), and
// GradientSync moves each parameter's gradient into main_grad as it lands.
// Otherwise main_grad() is grad().
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
  // `reduce_dtype` undefined (or the parameters' dtype): no main_grad buffer.
  FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params, int world, double bucket_mb,
                 c10::optional<torch::ScalarType> reduce_dtype = c10::nullopt);

  const std::vector<FlatEntry>& entries() const { return entries_; }
  const std::vector<Bucket>& buckets() const { return buckets_; }
  torch::Tensor& data() { return data_; }  // Flat parameters (compute dtype).
  torch::Tensor& grad() { return grad_; }  // Flat gradients as autograd writes them (compute dtype).
  // Where gradients are accumulated, reduced, clipped and read by the
  // optimizer: grad() itself, or its fp32 twin (see above).
  torch::Tensor& main_grad() { return main_grad_.defined() ? main_grad_ : grad_; }
  bool separate_main_grad() const { return main_grad_.defined(); }
  int64_t numel() const { return data_.numel(); }
  int64_t logical_numel() const;  // Without padding.
  // The pieces of [begin, end) that belong to parameters, each with its
  // weight-decay flag, in offset order (padding is left out). Optimizers walk
  // these instead of a full-size mask.
  struct Piece {
    int64_t begin = 0, end = 0;
    bool decay = true;
  };
  std::vector<Piece> PiecesIn(int64_t begin, int64_t end) const;
  // The bucket containing entry i.
  size_t BucketOf(size_t entry) const { return entry_bucket_[entry]; }

 private:
  std::vector<FlatEntry> entries_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> entry_bucket_;
  std::vector<size_t> by_offset_;  // Entry indices in offset order.
  torch::Tensor data_, grad_, main_grad_;
};

}  // namespace dfar
