// Loading a pretrained model: config, weights and tokenizer from one path.
//
// Accepted paths:
//   *.gguf            GGUF v2/v3 (F32/F16/BF16/Q8_0/Q4_0/Q4_1, dequantised at
//                     load; llama.cpp's Q/K row permutation undone); config
//                     and tokenizer come from its metadata.
//   a directory       Hugging Face layout: config.json, model.safetensors (or
//                     sharded with model.safetensors.index.json), and
//                     tokenizer.json (byte-level BPE) or tokenizer.model
//                     (SentencePiece).
// Failure: dfar::Error naming the file and, for weights, the tensor with the
// expected and found shapes (missing tensor, wrong shape, truncated file).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "dfar/core/config.h"
#include "dfar/data/tokenizer.h"
#include "dfar/model/decoder.h"

namespace dfar {

struct PretrainedModel {
  Decoder decoder{nullptr};
  std::shared_ptr<Tokenizer> tokenizer;  // nullptr if the path carries none.
  std::string source;                    // The path loaded.
  std::string format;                    // "gguf" or "hf".
};

// `target`: the device and dtype the parameters are created in (its init
// flag is ignored: loaders never run an init that the weights overwrite).
// Weights are converted one tensor at a time on the host (fp32 staging of
// that tensor only) and copied there.
PretrainedModel LoadPretrained(const std::string& path, bool with_tokenizer = true,
                               const ParameterPlacement& target = {});

// The base model that a run's model section names. init "pretrained" is
// LoadPretrained(model.path); init "random" reads only the config (and the
// tokenizer) from model.path and keeps the decoder's own initialisation,
// drawn after torch::manual_seed(seed): the same seed gives the same weights,
// so a LoRA checkpoint of a random base reloads onto the same base.
PretrainedModel LoadBaseModel(const ModelSection& model, uint64_t seed, const ParameterPlacement& target = {});

// Copies `values` (row-major, `shape`) into the decoder parameter `dfar_name`,
// checking the shape. `source` names the file in messages.
void AssignParameter(Decoder& decoder, const std::string& dfar_name, const std::string& ext_name,
                     const std::vector<int64_t>& shape, const std::vector<float>& values, const std::string& source);

}  // namespace dfar
