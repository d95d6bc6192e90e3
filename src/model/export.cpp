// Export to the Hugging Face layout.
//
// Why these choices:
// - LoRA is merged in place instead of into a copy: a 7B model in fp32 is
//   28 GB, and a second copy is what small hosts cannot afford. The header
//   documents the side effect.
// - Weights are converted to fp32 on the CPU one shard at a time, so a model
//   on a GPU (or in bf16) costs at most one shard of host memory beyond itself.
// - The whole directory is built under out_dir + ".tmp" and renamed at the
//   end: rename(2) of a directory is atomic on one file system, so readers
//   (and a resumed job) never see a half-written export under the real name.
// - Every safetensors file carries metadata format "pt": transformers refuses
//   a safetensors file whose metadata lacks it.
#include "dfar/model/export.h"

#include "dfar/model/tokenizer_export.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "dfar/core/error.h"
#include "dfar/core/file_util.h"
#include "dfar/data/bpe_tokenizer.h"
#include "dfar/model/name_adapter.h"
#include "dfar/weights/gguf.h"
#include "dfar/weights/safetensors.h"

namespace dfar {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The files of an HF tokenizer, copied as they are when present.
const char* const kHfTokenizerFiles[] = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                         "special_tokens_map.json"};

struct HfTensor {
  std::string name;     // HF name.
  torch::Tensor value;  // The live parameter (any device, any dtype).
  uint64_t fp32_bytes;  // Its size once written as F32.
};

void MergeUnmergedLora(Decoder& decoder) {
  for (auto& m : decoder->modules(/*include_self=*/false)) {
    auto* p = dynamic_cast<ProjImpl*>(m.get());
    if (p != nullptr && p->has_lora() && !p->merged) p->MergeLora();
  }
}

std::vector<HfTensor> HfTensors(Decoder& decoder) {
  std::vector<HfTensor> out;
  for (const auto& item : decoder->named_parameters(/*recurse=*/true)) {
    if (item.key().find("lora_") != std::string::npos) continue;  // Merged into the weights.
    const auto n = static_cast<uint64_t>(item.value().numel());
    out.push_back({HfNameFromDfar(item.key()), item.value(), 4 * n});
  }
  return out;
}

// Greedy: tensors in order, a new shard when the next would overflow this one.
std::vector<std::vector<size_t>> PlanShards(const std::vector<HfTensor>& tensors, uint64_t max_bytes) {
  std::vector<std::vector<size_t>> shards(1);
  uint64_t bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!shards.back().empty() && bytes + tensors[i].fp32_bytes > max_bytes) {
      shards.emplace_back();
      bytes = 0;
    }
    shards.back().push_back(i);
    bytes += tensors[i].fp32_bytes;
  }
  return shards;
}

void WriteShard(const fs::path& path, const std::vector<HfTensor>& tensors, const std::vector<size_t>& which) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> keep;  // Owns the fp32 copies until written.
  std::vector<SafetensorToWrite> out;
  for (size_t i : which) {
    keep.push_back(tensors[i].value.detach().to(torch::kCPU, torch::kFloat).contiguous());
    out.push_back({tensors[i].name, keep.back().sizes().vec(), keep.back().data_ptr<float>()});
  }
  WriteSafetensors(path.string(), out, {{"format", "pt"}});
}

std::string ShardName(size_t k, size_t n) {
  char name[64];
  std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", k, n);
  return name;
}

void WriteWeights(Decoder& decoder, const fs::path& dir, uint64_t max_shard_bytes) {
  const std::vector<HfTensor> tensors = HfTensors(decoder);
  uint64_t total = 0;
  for (const auto& t : tensors) total += t.fp32_bytes;
  const auto shards = PlanShards(tensors, max_shard_bytes);
  if (shards.size() == 1) {
    WriteShard(dir / "model.safetensors", tensors, shards[0]);
    return;
  }
  json weight_map = json::object();
  for (size_t k = 0; k < shards.size(); ++k) {
    const std::string file = ShardName(k + 1, shards.size());
    WriteShard(dir / file, tensors, shards[k]);
    for (size_t i : shards[k]) weight_map[tensors[i].name] = file;
  }
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", std::move(weight_map)}};
  WriteFileAtomic((dir / "model.safetensors.index.json").string(), index.dump(2));
}

// ToHfJson, plus what it leaves at a family default that this config overrides.
std::string HfConfigJson(const ModelConfig& c) {
  json j = json::parse(c.ToHfJson());
  j["torch_dtype"] = "float32";
  if (c.architecture == "llama") j["attention_bias"] = c.qkv_bias;
  if (c.architecture == "qwen2") {
    j["use_sliding_window"] = c.sliding_window > 0;
    if (c.sliding_window > 0) j["sliding_window"] = c.sliding_window;
    j["max_window_layers"] = 0;  // dfar windows every layer (when it windows at all).
  }
  return j.dump(2);
}

void WriteTokenizer(const PretrainedModel& model, const fs::path& dir) {
  if (model.format == "hf") {
    for (const char* name : kHfTokenizerFiles) {
      const fs::path src = fs::path(model.source) / name;
      if (fs::exists(src)) fs::copy_file(src, dir / name);
    }
  } else if (model.format == "gguf") {
    const GgufFile g = GgufFile::Open(model.source);
    WriteFileAtomic((dir / "tokenizer.json").string(), GgufTokenizerToHfJson(g));
    WriteFileAtomic((dir / "tokenizer_config.json").string(), GgufTokenizerConfigToHfJson(g));
  }
}

// "out/" and "out" name the same export; the staging directory is "out.tmp".
fs::path NormalDir(const std::string& out_dir) {
  DFAR_CHECK(!out_dir.empty(), "export directory must not be empty");
  fs::path out = fs::path(out_dir).lexically_normal();
  if (out.filename().empty()) out = out.parent_path();
  return out;
}

void WriteAll(PretrainedModel& model, const fs::path& dir, const ExportOptions& options) {
  MergeUnmergedLora(model.decoder);
  WriteFileAtomic((dir / "config.json").string(), HfConfigJson(model.decoder->config()));
  WriteWeights(model.decoder, dir, options.max_shard_bytes);
  WriteTokenizer(model, dir);
}

}  // namespace

void ExportHfModel(PretrainedModel& model, const std::string& out_dir, const ExportOptions& options) {
  DFAR_CHECK(!model.decoder.is_empty(), "ExportHfModel: the model has no decoder");
  const fs::path out = NormalDir(out_dir);
  fs::path tmp = out;
  tmp += ".tmp";
  DFAR_CHECK(!fs::exists(out) || (fs::is_directory(out) && fs::is_empty(out)), "export directory '", out.string(),
             "' already exists and is not empty; choose a new directory or remove it");
  try {
    fs::remove_all(tmp);  // A stale one from an interrupted export.
    fs::create_directories(tmp);
    WriteAll(model, tmp, options);
    fs::rename(tmp, out);  // Replaces an empty out_dir atomically.
  } catch (const fs::filesystem_error& e) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    DFAR_THROW("export to '", out.string(), "' failed: ", e.what());
  } catch (...) {
    std::error_code ignored;
    if (fs::exists(tmp, ignored)) fs::remove_all(tmp, ignored);
    throw;
  }
}

}  // namespace dfar
