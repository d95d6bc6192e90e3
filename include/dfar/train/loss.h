// The training loss: cross-entropy summed over supervised tokens.
//
// The caller divides by the GLOBAL count of supervised tokens in the
// optimizer step (all ranks, all micro-batches; one all-reduce), which makes
// k micro-batches on N ranks equal one batch of k*N (transformers#37766 is
// the bug this avoids). Logits are computed only at supervised positions.
#pragma once

#include <torch/torch.h>

#include "dfar/data/collate.h"
#include "dfar/model/decoder.h"

namespace dfar {

// Device tensors of a collated batch.
struct BatchTensors {
  torch::Tensor input_ids, labels, position_ids, segment_ids;  // [B, T] int64.
  torch::Tensor supervised_rows;  // [S] int64: flat positions (row * T + col) with a label.
  torch::Tensor targets;          // [S] int64: their labels.
  // Packed batches, where libtorch's SDPA has mask-free fused kernels
  // (compat::kSdpaFusedWithoutMask): the samples, for span attention.
  std::vector<SegmentSpan> spans;
  bool packed = false;
};

// Everything the step needs, computed on the host (supervised positions,
// targets and packed spans included) and uploaded in one copy: pinned and non-blocking when
// `device` is CUDA, so the host never waits for the device here.
BatchTensors ToTensors(const Batch& batch, bool packed, const torch::Device& device);

// Sum of token cross-entropies (fp32) over positions with a label. Without
// supervised_rows (a batch not from ToTensors) they are found on the device,
// which costs a host synchronisation.
torch::Tensor SupervisedCrossEntropySum(Decoder& decoder, const BatchTensors& batch);

}  // namespace dfar
