#include "dfar/train/trained_model.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dfar/ckpt/checkpoint.h"
#include "dfar/core/error.h"
#include "train_meta.h"

namespace dfar {
namespace {

namespace fs = std::filesystem;

// Size and CRC32C of one file, streamed in 1 MB blocks.
std::string FileIdentity(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  DFAR_CHECK(in.good(), "cannot read '", path.string(), "'");
  std::vector<char> buf(1 << 20);
  uint32_t crc = 0;
  uint64_t bytes = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<size_t>(in.gcount());
    crc = Crc32c(buf.data(), n, crc);
    bytes += n;
  }
  std::ostringstream os;
  os << path.filename().string() << ":" << bytes << ":" << std::hex << crc;
  return os.str();
}

}  // namespace

std::string ModelIdentity(const std::string& path) {
  if (fs::is_regular_file(path)) return FileIdentity(path);
  DFAR_CHECK(fs::is_directory(path), "model path '", path, "' does not exist");
  std::vector<std::string> parts;
  for (const auto& entry : fs::directory_iterator(path)) {
    const std::string name = entry.path().filename().string();
    const bool relevant = name.find(".safetensors") != std::string::npos || name == "config.json" ||
                          name == "tokenizer.json" || name == "tokenizer.model";
    if (relevant && entry.is_regular_file()) parts.push_back(FileIdentity(entry.path()));
  }
  std::sort(parts.begin(), parts.end());
  std::string id;
  for (const auto& p : parts) id += (id.empty() ? "" : ";") + p;
  return id;
}

std::string BaseModelIdentity(const ModelSection& model, uint64_t seed) {
  const std::string files = ModelIdentity(model.path);
  return model.init == "random" ? "random-init(seed " + std::to_string(seed) + ");" + files : files;
}

PretrainedModel LoadTrainedModel(const std::string& checkpoint_dir, Config* config_out) {
  const CheckpointReader reader = CheckpointReader::Open(checkpoint_dir);
  const TrainMeta meta = TrainMeta::FromJson(reader.meta(), checkpoint_dir + "/index.json");
  DFAR_CHECK(!meta.config_yaml.empty(), checkpoint_dir,
             ": index.json has no training config (was it written by `dfar train`?)");
  Config config = LoadConfigText(meta.config_yaml, checkpoint_dir + "/index.json meta");
  DFAR_CHECK(meta.model_identity == BaseModelIdentity(config.model, config.run.seed), checkpoint_dir, ": base model '",
             config.model.path, "' differs from the one the checkpoint was trained from (", meta.model_identity, ")");
  PretrainedModel model = LoadBaseModel(config.model, config.run.seed);
  if (config.lora.enabled)
    model.decoder->EnableLora(config.lora.targets, config.lora.rank, config.lora.alpha, config.lora.dropout);
  torch::NoGradGuard no_grad;
  int loaded = 0;
  for (auto& p : model.decoder->named_parameters()) {
    const std::string name = "param/" + p.key();
    if (!reader.Has(name)) continue;
    const TensorInfo& info = reader.Tensor(name);
    DFAR_CHECK(info.global_shape == std::vector<int64_t>(p.value().sizes().begin(), p.value().sizes().end()),
               checkpoint_dir, ": tensor '", name, "' has shape ", torch::IntArrayRef(info.global_shape),
               " but the model expects ", p.value().sizes());
    auto buf = torch::empty({info.numel()}, torch::kFloat);
    reader.Read(name, 0, info.numel(), buf.data_ptr());
    p.value().copy_(buf.view(p.value().sizes()));
    ++loaded;
  }
  DFAR_CHECK(loaded > 0, checkpoint_dir, ": holds no parameters of this model");
  // The adapters were trained beside an NF4 base: evaluate them with it.
  if (config.model.quant == "nf4") model.decoder->QuantizeBaseNf4();
  if (config_out != nullptr) *config_out = config;
  return model;
}

}  // namespace dfar
