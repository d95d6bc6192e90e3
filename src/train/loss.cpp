#include "dfar/train/loss.h"

#include <cstring>

#include "dfar/core/error.h"
#include "dfar/core/torch_compat.h"

namespace dfar {
namespace {

// Every non-padding segment of a packed batch, in row order.
std::vector<SegmentSpan> PackedSpans(const Batch& batch) {
  std::vector<SegmentSpan> spans;
  for (int64_t r = 0; r < batch.rows; ++r) {
    const int32_t* seg = batch.segment_ids.data() + r * batch.cols;
    for (int64_t c = 0; c < batch.cols; ++c) {
      if (seg[c] == 0) continue;
      if (c > 0 && seg[c] == seg[c - 1] && !spans.empty() && spans.back().row == r) {
        ++spans.back().length;
      } else {
        spans.push_back({r, c, 1});
      }
    }
  }
  return spans;
}

}  // namespace

BatchTensors ToTensors(const Batch& batch, bool packed, const torch::Device& device) {
  BatchTensors t;
  t.packed = packed;
  const int64_t n = batch.rows * batch.cols;
  // Supervised positions and their targets, found on the host (a nonzero()
  // on the device would make the host wait for it).
  std::vector<int64_t> rows, targets;
  for (int64_t i = 0; i < n; ++i) {
    if (batch.labels[static_cast<size_t>(i)] == kIgnoreIndex) continue;
    rows.push_back(i);
    targets.push_back(batch.labels[static_cast<size_t>(i)]);
  }
  const int64_t s = static_cast<int64_t>(rows.size());
  // One host buffer, then one copy (pinned and non-blocking on CUDA): input
  // ids, labels, [positions, segments,] supervised rows, targets.
  const int64_t planes = packed ? 4 : 2;
  auto host_options = torch::TensorOptions().dtype(torch::kLong).pinned_memory(device.is_cuda());
  auto host = torch::empty({planes * n + 2 * s}, host_options);
  int64_t* out = host.data_ptr<int64_t>();
  auto put = [&out](const std::vector<int32_t>& v) {
    for (int32_t x : v) *out++ = x;
  };
  put(batch.input_ids);
  put(batch.labels);
  if (packed) {
    put(batch.position_ids);
    put(batch.segment_ids);
  }
  std::memcpy(out, rows.data(), rows.size() * sizeof(int64_t));
  std::memcpy(out + s, targets.data(), targets.size() * sizeof(int64_t));
  auto all = device.is_cpu() ? host : host.to(device, /*non_blocking=*/true);
  auto plane = [&](int64_t k) { return all.narrow(0, k * n, n).view({batch.rows, batch.cols}); };
  t.input_ids = plane(0);
  t.labels = plane(1);
  // Right-padded rows need no mask: under causal attention a real token never
  // sees the padding after it, and padding positions carry no label. Only
  // packed rows need segment ids (and their restarted positions) and spans.
  if (packed) {
    t.position_ids = plane(2);
    t.segment_ids = plane(3);
    if (compat::kSdpaFusedWithoutMask) t.spans = PackedSpans(batch);
  }
  t.supervised_rows = all.narrow(0, planes * n, s);
  t.targets = all.narrow(0, planes * n + s, s);
  return t;
}

torch::Tensor SupervisedCrossEntropySum(Decoder& decoder, const BatchTensors& batch) {
  auto hidden = decoder->forward({batch.input_ids, batch.position_ids, batch.segment_ids, batch.spans});
  torch::Tensor rows = batch.supervised_rows, targets = batch.targets;
  if (!rows.defined()) {  // A batch built by hand (tests, benchmarks): found on the device.
    const auto flat = batch.labels.reshape({-1});
    rows = flat.ne(kIgnoreIndex).nonzero().squeeze(1);
    targets = flat.index_select(0, rows);
  }
  auto selected = hidden.reshape({-1, hidden.size(-1)}).index_select(0, rows);
  auto logits = decoder->Logits(selected).to(torch::kFloat);
  return torch::nn::functional::cross_entropy(logits, targets,
                                              torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
}

}  // namespace dfar
