// Trainable parameters packed into one flat buffer, in buckets.
//
// Owns: a contiguous buffer holding every trainable parameter (the model's
// tensors become views into it) and, for ZeRO 0/1, a same-shaped gradient
// buffer (the parameters' .grad become views too, so autograd accumulates
// straight into it). The buffer is cut into buckets in reverse registration order (backward
// produces the last layers' gradients first); each bucket is padded to a
// multiple of the world size so it splits into equal per-rank parts for
// ZeRO. Padding is zero and belongs to no parameter.
//
// Why flat: one all-reduce per bucket needs no packing copies; ZeRO shards
// are plain ranges; the optimizer runs as a handful of vector ops.
//
// Reduce dtype: with bf16 parameters and reduce_dtype fp32, gradients are
// accumulated across micro-steps and reduced across ranks in fp32; autograd
// still writes bf16, and GradientSync moves each gradient into the fp32
// buffer as it lands.
//
// ZeRO stages (FlatLayout::zero) decide what persists on this rank:
//   0: everything; the rank owns the whole buffer (one owned range).
//   1: everything; the rank owns its part of each bucket (optimizer state
//      exists for the owned parts only: AdamW).
//   2: as 1, but no full gradient buffer: parameters' .grad are not views,
//      GradientSync stages each bucket's gradients while it reduce-scatters
//      them, and only the owned parts persist (owned_grad()).
//   3: as 2, and parameters are sharded too: each bucket is one unit (a
//      decoder layer, or the embedding/final-norm/head "root"), whose full
//      values exist only while ParameterGather holds it gathered; the
//      owned parts persist (owned_values()).
// Consumers that update or save state (AdamW, clipping, checkpoints) use the
// owned ranges only, through owned_values() and owned_grad().
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
  int unit = 0;  // ZeRO 3: 0 = root, l + 1 = decoder layer l (ParameterUnit).
};

struct FlatLayout {
  int world = 1, rank = 0;
  double bucket_mb = 32;
  int zero = 0;  // 0-3: see the top of this file.
  // Undefined (or the parameters' dtype): gradients stay in the parameters' dtype.
  c10::optional<torch::ScalarType> reduce_dtype;
};

// The ZeRO-3 unit of a parameter name: l + 1 for "layers.<l>.", else 0.
int ParameterUnit(const std::string& name);

class FlatParameters {
 public:
  // `params`: the trainable (name, tensor) pairs in registration order.
  // They are re-pointed at views of the flat buffers (dtype preserved).
  FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params, const FlatLayout& layout);
  // ZeRO 0 on `world` ranks (tests, benchmarks).
  FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params, int world, double bucket_mb,
                 c10::optional<torch::ScalarType> reduce_dtype = c10::nullopt);

  const std::vector<FlatEntry>& entries() const { return entries_; }
  const std::vector<Bucket>& buckets() const { return buckets_; }
  const FlatLayout& layout() const { return layout_; }
  int zero() const { return layout_.zero; }
  bool shards_gradients() const { return layout_.zero >= 2; }
  bool shards_parameters() const { return layout_.zero >= 3; }
  torch::ScalarType dtype() const { return dtype_; }
  torch::ScalarType grad_dtype() const { return grad_dtype_; }
  torch::Device device() const { return device_; }

  // The full flat buffers (ZeRO 0-2 for data(), 0-1 for the gradients).
  torch::Tensor& data();       // Flat parameters (compute dtype).
  torch::Tensor& grad();       // Flat gradients as autograd writes them (compute dtype).
  torch::Tensor& main_grad();  // Where gradients accumulate and are reduced: grad() or its fp32 twin.
  bool separate_main_grad() const { return main_grad_.defined(); }
  // Bucket b's full values: a view of data(), or (ZeRO 3) the unit's own
  // buffer, whose storage ParameterGather frees and refills.
  torch::Tensor bucket_values(size_t b);

  // What this rank owns: ranges of the flat buffer, in bucket order.
  const std::vector<std::pair<int64_t, int64_t>>& owned() const { return owned_; }
  // Offset of owned range i in the compact (owned-only) layout, which the
  // optimizer state, the sharded gradients and the ZeRO-3 shards share.
  int64_t compact_offset(size_t i) const { return compact_offsets_[i]; }
  int64_t owned_numel() const { return owned_numel_; }
  torch::Tensor owned_values(size_t i);  // Persistent parameter values of owned range i.
  torch::Tensor owned_grad(size_t i);    // Persistent, final-after-reduction gradient of owned range i.
  // ZeRO 3: copies the owned parts out of the (full, gathered) bucket values.
  void RefreshOwnedValues();
  // Zeroes every persistent gradient buffer.
  void ZeroGradients();

  int64_t numel() const { return numel_; }  // With padding.
  int64_t logical_numel() const;            // Without padding.
  // Bytes this rank holds persistently for parameters and gradients (the
  // trainable ones; ZeRO-3 unit buffers count while gathered).
  int64_t parameter_bytes() const;
  int64_t gradient_bytes() const;
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
  // The owned range of bucket b (ZeRO >= 1; ZeRO 0 owns one range).
  size_t OwnedRangeOfBucket(size_t b) const { return layout_.zero == 0 ? 0 : b; }

 private:
  void LayOut(const std::vector<std::pair<std::string, torch::Tensor>>& params);
  void Allocate();
  void PointParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params);

  FlatLayout layout_;
  torch::ScalarType dtype_, grad_dtype_;
  torch::Device device_{torch::kCPU};
  int64_t numel_ = 0, owned_numel_ = 0;
  std::vector<FlatEntry> entries_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> entry_bucket_;
  std::vector<size_t> by_offset_;  // Entry indices in offset order.
  std::vector<std::pair<int64_t, int64_t>> owned_;
  std::vector<int64_t> compact_offsets_;
  torch::Tensor data_, grad_, main_grad_;
  std::vector<torch::Tensor> unit_values_;   // ZeRO 3: per bucket.
  torch::Tensor owned_values_, owned_grad_;  // Compact: ZeRO 3 values, ZeRO >= 2 gradients.
};

}  // namespace dfar
