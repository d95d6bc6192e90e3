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
  bool packed = false;
};

BatchTensors ToTensors(const Batch& batch, bool packed, const torch::Device& device);

// Sum of token cross-entropies (fp32) over positions with a label.
torch::Tensor SupervisedCrossEntropySum(Decoder& decoder, const BatchTensors& batch);

}  // namespace dfar
