// Exporting a model to the Hugging Face layout, so that `transformers`
// (AutoModelForCausalLM / AutoTokenizer) and dfar's own LoadPretrained can
// load it.
//
// Owns: turning a PretrainedModel (possibly with LoRA adapters) into a new
// directory holding
//   config.json                     ModelConfig::ToHfJson (torch_dtype float32;
//                                   attention_bias / use_sliding_window as the
//                                   config says);
//   model.safetensors               every non-LoRA parameter under its HF name,
//                                   F32, with metadata format "pt" (no
//                                   lm_head.weight when embeddings are tied);
//                                   above ExportOptions::max_shard_bytes, shards
//                                   model-0000K-of-0000N.safetensors plus
//                                   model.safetensors.index.json instead;
//   the tokenizer                   model.format "hf": tokenizer.json,
//                                   tokenizer.model, tokenizer_config.json and
//                                   special_tokens_map.json copied from
//                                   model.source, each when present;
//                                   model.format "gguf": tokenizer.json and
//                                   tokenizer_config.json generated from the
//                                   GGUF metadata (bpe_tokenizer.h);
//                                   otherwise no tokenizer files.
//
// Side effect: LoRA is merged into the weights of the model passed in (every
// projection with an unmerged adapter gets W += scale * B A and merged = true),
// and stays merged afterwards. Call decoder->UnmergeLora() to go back to
// training.
//
// Atomicity: everything is written into out_dir + ".tmp" (a stale one left by
// an interrupted export is removed first) and renamed to out_dir at the end,
// so a directory named out_dir is always a complete export. On failure the
// ".tmp" directory is removed and out_dir does not exist.
// Failure: dfar::Error when out_dir exists and is not empty, or naming the
// file that could not be read or written.
// Thread-safety: one export per model at a time; no other thread may use the
// model meanwhile.
#pragma once

#include <cstdint>
#include <string>

#include "dfar/model/pretrained.h"

namespace dfar {

struct ExportOptions {
  // Weights above this many bytes (fp32) are split into shards of at most this
  // size each (one tensor never spans two). transformers' default for
  // save_pretrained was "2GB" = 2e9 bytes for years; smaller shards load with
  // less peak memory on small hosts, larger ones mean fewer files.
  uint64_t max_shard_bytes = 2000000000ull;
};

void ExportHfModel(PretrainedModel& model, const std::string& out_dir, const ExportOptions& options = {});

}  // namespace dfar
