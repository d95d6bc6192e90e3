#include "dfar/train/loss.h"

namespace dfar {
namespace {

torch::Tensor FromVector(const std::vector<int32_t>& v, int64_t rows, int64_t cols) {
  return torch::from_blob(const_cast<int32_t*>(v.data()), {rows, cols}, torch::kInt).to(torch::kLong);
}

}  // namespace

BatchTensors ToTensors(const Batch& batch, bool packed, const torch::Device& device) {
  BatchTensors t;
  t.packed = packed;
  t.input_ids = FromVector(batch.input_ids, batch.rows, batch.cols).to(device);
  t.labels = FromVector(batch.labels, batch.rows, batch.cols).to(device);
  // Right-padded rows need no mask: under causal attention a real token never
  // sees the padding after it, and padding positions carry no label. Only
  // packed rows need segment ids (and their restarted positions).
  if (packed) {
    t.position_ids = FromVector(batch.position_ids, batch.rows, batch.cols).to(device);
    t.segment_ids = FromVector(batch.segment_ids, batch.rows, batch.cols).to(device);
  }
  return t;
}

torch::Tensor SupervisedCrossEntropySum(Decoder& decoder, const BatchTensors& batch) {
  auto hidden = decoder->forward({batch.input_ids, batch.position_ids, batch.segment_ids});
  auto flat_labels = batch.labels.reshape({-1});
  auto rows = (flat_labels != kIgnoreIndex).nonzero().squeeze(1);
  auto selected = hidden.reshape({-1, hidden.size(-1)}).index_select(0, rows);
  auto logits = decoder->Logits(selected).to(torch::kFloat);
  return torch::nn::functional::cross_entropy(logits, flat_labels.index_select(0, rows),
                                              torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
}

}  // namespace dfar
