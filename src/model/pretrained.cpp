#include "dfar/model/pretrained.h"

#include <filesystem>
#include <sstream>

#include "dfar/core/error.h"
#include "dfar/data/bpe_tokenizer.h"
#include "dfar/model/name_adapter.h"
#include "dfar/weights/gguf.h"
#include "dfar/weights/safetensors.h"

namespace dfar {
namespace {

namespace fs = std::filesystem;

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  return os.str() + "]";
}

torch::Tensor FindParameter(Decoder& decoder, const std::string& name) {
  auto params = decoder->named_parameters(true);
  auto* p = params.find(name);
  DFAR_CHECK(p != nullptr, "decoder has no parameter '", name, "'");
  return *p;
}

// llama.cpp stores Q and K rows interleaved per head for its RoPE kernel
// (convert_hf_to_gguf's permute); undo it so rotate-half RoPE applies.
std::vector<float> UnpermuteRows(const std::vector<float>& w, int64_t heads, int64_t rows, int64_t cols) {
  const int64_t half = rows / heads / 2;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t two = 0; two < 2; ++two) {
        const int64_t src = ((h * half + i) * 2 + two) * cols;  // GGUF row (h, i, two).
        const int64_t dst = ((h * 2 + two) * half + i) * cols;  // HF row (h, two, i).
        std::copy(w.begin() + src, w.begin() + src + cols, out.begin() + dst);
      }
  return out;
}

void LoadGgufWeights(Decoder& decoder, const GgufFile& g) {
  const ModelConfig& c = decoder->config();
  for (const auto& item : decoder->named_parameters(true)) {
    const std::string& name = item.key();
    if (name.find("lora_") != std::string::npos) continue;
    const std::string ext = GgufNameFromDfar(name);
    const GgufTensorInfo* info = g.FindTensor(ext);
    DFAR_CHECK(info != nullptr, g.path(), ": tensor '", ext, "' (for ", name, ") is missing");
    std::vector<int64_t> shape(info->shape.rbegin(), info->shape.rend());  // ggml order is reversed.
    std::vector<float> values = g.Dequantize(*info);
    const bool permuted = c.architecture == "llama" && shape.size() == 2;
    if (permuted && ext.find("attn_q.weight") != std::string::npos)
      values = UnpermuteRows(values, c.num_heads, shape[0], shape[1]);
    if (permuted && ext.find("attn_k.weight") != std::string::npos)
      values = UnpermuteRows(values, c.num_kv_heads, shape[0], shape[1]);
    AssignParameter(decoder, name, ext, shape, values, g.path());
  }
}

void LoadHfWeights(Decoder& decoder, const SafetensorsCheckpoint& ckpt, const std::string& source) {
  for (const auto& item : decoder->named_parameters(true)) {
    const std::string& name = item.key();
    if (name.find("lora_") != std::string::npos) continue;
    const std::string ext = HfNameFromDfar(name);
    const SafetensorInfo* info = ckpt.Find(ext);
    DFAR_CHECK(info != nullptr, source, ": tensor '", ext, "' (for ", name, ") is missing");
    AssignParameter(decoder, name, ext, info->shape, ckpt.ToFloat(ext), info->file);
  }
}

std::shared_ptr<Tokenizer> HfTokenizer(const fs::path& dir) {
  if (fs::exists(dir / "tokenizer.json")) return LoadBpeTokenizerFromHfJson((dir / "tokenizer.json").string());
  if (fs::exists(dir / "tokenizer.model")) return LoadSentencePieceTokenizer((dir / "tokenizer.model").string());
  return nullptr;
}

}  // namespace

void AssignParameter(Decoder& decoder, const std::string& dfar_name, const std::string& ext_name,
                     const std::vector<int64_t>& shape, const std::vector<float>& values, const std::string& source) {
  torch::Tensor p = FindParameter(decoder, dfar_name);
  const std::vector<int64_t> expected(p.sizes().begin(), p.sizes().end());
  DFAR_CHECK(shape == expected, source, ": tensor '", ext_name, "' has shape ", ShapeText(shape), " but the config (",
             dfar_name, ") expects ", ShapeText(expected));
  torch::NoGradGuard no_grad;
  auto src = torch::from_blob(const_cast<float*>(values.data()), p.sizes(), torch::kFloat);
  p.copy_(src);
}

namespace {
// HF's Llama init: every weight matrix and the embedding N(0, std), biases 0,
// norms 1; logits then start near zero and the first loss near ln(vocab).
// (The layers' own defaults, Kaiming-uniform matrices and an N(0, 1)
// embedding, made a random 1B model's first loss ~60.) Values are drawn on
// the CPU generator one tensor at a time and copied to the parameter's
// device and dtype, so a seed gives the same model on every device.
void InitLikeHf(Decoder& decoder) {
  torch::NoGradGuard no_grad;
  const double std = decoder->config().initializer_range;
  for (auto& p : decoder->named_parameters()) {
    auto& t = p.value();
    if (p.key().find("norm") != std::string::npos) {
      t.fill_(1.0);
    } else if (t.dim() >= 2) {
      t.copy_(torch::empty(t.sizes(), torch::kFloat).normal_(0.0, std));
    } else {
      t.zero_();
    }
  }
}

// Config (and tokenizer) of `path`; its weights only when `load_weights`.
// The decoder's parameters are allocated uninitialised where `target` puts
// them; every one is then written (weights or InitLikeHf).
PretrainedModel Load(const std::string& path, bool with_tokenizer, bool load_weights, ParameterPlacement target) {
  PretrainedModel m;
  m.source = path;
  target.init = false;
  DFAR_CHECK(fs::exists(path), "model path '", path, "' does not exist");
  if (fs::is_regular_file(path) && fs::path(path).extension() == ".gguf") {
    GgufFile g = GgufFile::Open(path);
    m.format = "gguf";
    m.decoder = Decoder(ModelConfigFromGguf(g), target);
    if (load_weights) LoadGgufWeights(m.decoder, g);
    if (with_tokenizer) m.tokenizer = LoadBpeTokenizerFromGguf(g);
    return m;
  }
  DFAR_CHECK(fs::is_directory(path), "model path '", path,
             "' is neither a .gguf file nor a Hugging Face model directory");
  m.format = "hf";
  m.decoder = Decoder(ModelConfigFromHfJson((fs::path(path) / "config.json").string()), target);
  if (load_weights) LoadHfWeights(m.decoder, SafetensorsCheckpoint::Open(path), path);
  if (with_tokenizer) m.tokenizer = HfTokenizer(path);
  return m;
}
}  // namespace

PretrainedModel LoadBaseModel(const ModelSection& model, uint64_t seed, const ParameterPlacement& target) {
  if (model.init != "random") return LoadPretrained(model.path, /*with_tokenizer=*/true, target);
  torch::manual_seed(seed);
  PretrainedModel m = Load(model.path, /*with_tokenizer=*/true, /*load_weights=*/false, target);
  InitLikeHf(m.decoder);
  return m;
}

PretrainedModel LoadPretrained(const std::string& path, bool with_tokenizer, const ParameterPlacement& target) {
  return Load(path, with_tokenizer, /*load_weights=*/true, target);
}

}  // namespace dfar
