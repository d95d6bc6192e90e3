// Loading what a training run produced, for evaluation or export.
//
// LoadTrainedModel reads a checkpoint directory (step-N): the run's resolved
// config from the index, the base model from config.model.path (checked
// against the recorded size and CRC32C), LoRA adapters enabled as configured,
// and every saved parameter, read whole (so any world size can load a
// checkpoint written by any other). A run trained with model.quant=nf4 gets
// its base quantised the same way (QLoRA), so evaluation sees the weights
// the adapters were trained with; exporting merges the adapters into the
// dequantised base.
// Failure: dfar::Error naming the checkpoint, tensor and shapes.
#pragma once

#include <string>

#include "dfar/core/config.h"
#include "dfar/model/pretrained.h"

namespace dfar {

PretrainedModel LoadTrainedModel(const std::string& checkpoint_dir, Config* config_out);

// Identity of a model file or directory: bytes and CRC32C of its weight and
// tokenizer files, so a checkpoint can refuse a different base model.
std::string ModelIdentity(const std::string& path);
// ModelIdentity of the base model that a model section names; a randomly
// initialised base (model.init random) also records its seed.
std::string BaseModelIdentity(const ModelSection& model, uint64_t seed);

}  // namespace dfar
