#include "dfar/model/sentence_encoder.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <sstream>

#include "dfar/core/error.h"
#include "dfar/weights/safetensors.h"

namespace dfar {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json ReadJson(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  DFAR_CHECK(in, path.string(), ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    DFAR_THROW(path.string(), ": not valid JSON: ", e.what());
  }
}

int64_t PositiveInt(const json& j, const char* key, const std::string& source) {
  DFAR_CHECK(j.contains(key), source, ": key ", key, " is missing");
  DFAR_CHECK(j.at(key).is_number_integer() && j.at(key).get<int64_t>() > 0, source, ": key ", key,
             " is not a positive integer");
  return j.at(key).get<int64_t>();
}

std::string StringOr(const json& j, const char* key, const std::string& fallback, const std::string& source) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  DFAR_CHECK(j.at(key).is_string(), source, ": key ", key, " is not a string");
  return j.at(key).get<std::string>();
}

std::string ShapeText(c10::IntArrayRef shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

// A namespace-only module, so that parameter names are HF's
// ("encoder.layer.0.attention.self.query.weight"): libtorch forbids dots in
// one registered name, so every dotted level is a module of its own.
std::shared_ptr<torch::nn::Module> Level(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

}  // namespace

// One post-LN transformer layer, laid out as HF's BertLayer. Forward reads the
// weights only (it is not const because ModuleHolder::forward is not).
class BertLayerImpl : public torch::nn::Module {
 public:
  explicit BertLayerImpl(const BertEncoderConfig& c) : heads_(c.num_heads), head_dim_(c.hidden_size / c.num_heads) {
    const auto norm = torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps);
    auto attention = Level(*this, "attention");
    auto self = Level(*attention, "self");
    query_ = self->register_module("query", torch::nn::Linear(c.hidden_size, c.hidden_size));
    key_ = self->register_module("key", torch::nn::Linear(c.hidden_size, c.hidden_size));
    value_ = self->register_module("value", torch::nn::Linear(c.hidden_size, c.hidden_size));
    auto attn_out = Level(*attention, "output");
    attn_dense_ = attn_out->register_module("dense", torch::nn::Linear(c.hidden_size, c.hidden_size));
    attn_norm_ = attn_out->register_module("LayerNorm", torch::nn::LayerNorm(norm));
    up_ = Level(*this, "intermediate")->register_module("dense", torch::nn::Linear(c.hidden_size, c.intermediate_size));
    auto out = Level(*this, "output");
    down_ = out->register_module("dense", torch::nn::Linear(c.intermediate_size, c.hidden_size));
    out_norm_ = out->register_module("LayerNorm", torch::nn::LayerNorm(norm));
  }

  // x [B, T, H]; additive_mask [B, 1, 1, T] (0 for tokens, the lowest float for padding).
  torch::Tensor Forward(torch::Tensor x, const torch::Tensor& additive_mask) {
    x = attn_norm_->forward(attn_dense_->forward(Attention(x, additive_mask)) + x);
    return out_norm_->forward(down_->forward(torch::gelu(up_->forward(x))) + x);
  }

 private:
  torch::Tensor Heads(const torch::Tensor& t) const {
    return t.view({t.size(0), t.size(1), heads_, head_dim_}).transpose(1, 2);  // [B, heads, T, d]
  }

  // The order of operations is HF's (scores, then / sqrt(d), then + mask),
  // which keeps fp32 rounding close to the reference.
  torch::Tensor Attention(const torch::Tensor& x, const torch::Tensor& additive_mask) {
    const torch::Tensor q = Heads(query_->forward(x)), k = Heads(key_->forward(x)), v = Heads(value_->forward(x));
    torch::Tensor scores = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(head_dim_));
    const torch::Tensor probs = torch::softmax(scores + additive_mask, -1);
    return torch::matmul(probs, v).transpose(1, 2).reshape({x.size(0), x.size(1), heads_ * head_dim_});
  }

  int64_t heads_, head_dim_;
  torch::nn::Linear query_{nullptr}, key_{nullptr}, value_{nullptr}, attn_dense_{nullptr}, up_{nullptr}, down_{nullptr};
  torch::nn::LayerNorm attn_norm_{nullptr}, out_norm_{nullptr};
};

// Embeddings and the layer stack of HF's BertModel (no pooler: mean pooling
// replaces it).
class BertEncoderImpl : public torch::nn::Module {
 public:
  explicit BertEncoderImpl(const BertEncoderConfig& c) {
    auto emb = Level(*this, "embeddings");
    word_ = emb->register_module("word_embeddings", torch::nn::Embedding(c.vocab_size, c.hidden_size));
    position_ =
        emb->register_module("position_embeddings", torch::nn::Embedding(c.max_position_embeddings, c.hidden_size));
    token_type_ = emb->register_module("token_type_embeddings", torch::nn::Embedding(c.type_vocab_size, c.hidden_size));
    emb_norm_ = emb->register_module(
        "LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
    auto layers = Level(*Level(*this, "encoder"), "layer");
    for (int64_t i = 0; i < c.num_layers; ++i) {
      layers_.push_back(layers->register_module(std::to_string(i), std::make_shared<BertLayerImpl>(c)));
    }
  }

  // ids [B, T] int64, mask [B, T] float (1 token, 0 padding) -> [B, T, H].
  torch::Tensor Forward(const torch::Tensor& ids, const torch::Tensor& mask) {
    const int64_t t = ids.size(1);
    const torch::Tensor positions = torch::arange(t, ids.options());
    torch::Tensor x = word_->forward(ids) + token_type_->weight[0] + position_->forward(positions);
    x = emb_norm_->forward(x);
    // HF's extended attention mask: (1 - mask) * finfo(float32).min, added to the scores.
    const torch::Tensor additive =
        ((1.0 - mask) * std::numeric_limits<float>::lowest()).unsqueeze(1).unsqueeze(2);  // [B, 1, 1, T]
    for (const auto& layer : layers_) x = layer->Forward(x, additive);
    return x;
  }

 private:
  torch::nn::Embedding word_{nullptr}, position_{nullptr}, token_type_{nullptr};
  torch::nn::LayerNorm emb_norm_{nullptr};
  std::vector<std::shared_ptr<BertLayerImpl>> layers_;
};

BertEncoderConfig BertEncoderConfigFromJson(const std::string& path) {
  const json j = ReadJson(path);
  DFAR_CHECK(j.is_object(), path, ": the top level is not a JSON object");
  const std::string type = StringOr(j, "model_type", "", path);
  DFAR_CHECK(type == "bert", path, ": model_type is '", type, "'; the sentence encoder runs BERT only");
  const std::string act = StringOr(j, "hidden_act", "gelu", path);
  DFAR_CHECK(act == "gelu", path, ": hidden_act is '", act, "'; only 'gelu' (erf) is supported");
  const std::string pos = StringOr(j, "position_embedding_type", "absolute", path);
  DFAR_CHECK(pos == "absolute", path, ": position_embedding_type is '", pos, "'; only 'absolute' is supported");
  BertEncoderConfig c;
  c.vocab_size = PositiveInt(j, "vocab_size", path);
  c.hidden_size = PositiveInt(j, "hidden_size", path);
  c.num_layers = PositiveInt(j, "num_hidden_layers", path);
  c.num_heads = PositiveInt(j, "num_attention_heads", path);
  c.intermediate_size = PositiveInt(j, "intermediate_size", path);
  c.max_position_embeddings = PositiveInt(j, "max_position_embeddings", path);
  c.type_vocab_size = PositiveInt(j, "type_vocab_size", path);
  DFAR_CHECK(j.contains("layer_norm_eps") && j.at("layer_norm_eps").is_number(), path,
             ": key layer_norm_eps is missing or not a number");
  c.layer_norm_eps = j.at("layer_norm_eps").get<double>();
  DFAR_CHECK(c.hidden_size % c.num_heads == 0, path, ": hidden_size ", c.hidden_size,
             " is not a multiple of num_attention_heads ", c.num_heads);
  return c;
}

namespace {

// modules.json: Transformer at "", then mean Pooling, then optionally Normalize.
// Returns whether Normalize is there; checks the pooling config on the way.
bool ReadModules(const fs::path& dir, int64_t hidden_size) {
  const fs::path path = dir / "modules.json";
  const json modules = ReadJson(path);
  DFAR_CHECK(modules.is_array() && (modules.size() == 2 || modules.size() == 3), path.string(),
             ": want [Transformer, Pooling] or [Transformer, Pooling, Normalize]");
  const char* want[] = {"sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
                        "sentence_transformers.models.Normalize"};
  for (size_t i = 0; i < modules.size(); ++i) {
    const std::string type = StringOr(modules[i], "type", "", path.string());
    DFAR_CHECK(type == want[i], path.string(), ": module ", i, " has type '", type, "', want '", want[i], "'");
  }
  DFAR_CHECK(StringOr(modules[0], "path", "", path.string()).empty(), path.string(),
             ": the Transformer module must live in the directory itself (path \"\")");
  const fs::path pooling = dir / StringOr(modules[1], "path", "", path.string()) / "config.json";
  const json p = ReadJson(pooling);
  DFAR_CHECK(p.value("word_embedding_dimension", int64_t{0}) == hidden_size, pooling.string(),
             ": word_embedding_dimension is not the model's hidden_size ", hidden_size);
  for (const auto& [key, value] : p.items()) {
    if (key.rfind("pooling_mode_", 0) != 0) continue;
    const bool want_on = key == "pooling_mode_mean_tokens";
    DFAR_CHECK(value.is_boolean() && value.get<bool>() == want_on, pooling.string(), ": ", key, " is ", value.dump(),
               "; only mean pooling (pooling_mode_mean_tokens alone) is supported");
  }
  DFAR_CHECK(p.value("pooling_mode_mean_tokens", false), pooling.string(), ": pooling_mode_mean_tokens is not true");
  return modules.size() == 3;
}

int64_t ReadMaxSeqLength(const fs::path& dir, const BertEncoderConfig& c) {
  const fs::path path = dir / "sentence_bert_config.json";
  if (!fs::exists(path)) return c.max_position_embeddings;
  const json j = ReadJson(path);
  DFAR_CHECK(!j.value("do_lower_case", false), path.string(),
             ": do_lower_case true is not supported (the tokenizer's normalizer lowercases)");
  const int64_t n = PositiveInt(j, "max_seq_length", path.string());
  DFAR_CHECK(n <= c.max_position_embeddings, path.string(), ": max_seq_length ", n, " exceeds max_position_embeddings ",
             c.max_position_embeddings);
  return n;
}

// Copies every parameter from the safetensors file by its HF name.
void LoadWeights(BertEncoderImpl& bert, const fs::path& dir) {
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::Open(dir.string());
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& item : bert.named_parameters(true)) {
    const std::string& name = item.key();
    const SafetensorInfo* info = ckpt.Find(name);
    DFAR_CHECK(info != nullptr, (dir / "model.safetensors").string(), ": tensor '", name, "' is missing");
    const std::vector<int64_t> want(item.value().sizes().begin(), item.value().sizes().end());
    DFAR_CHECK(info->shape == want, info->file, ": tensor '", name, "' has shape ", ShapeText(info->shape),
               " but config.json expects ", ShapeText(want));
    std::vector<float> values = ckpt.ToFloat(name);
    item.value().copy_(torch::from_blob(values.data(), item.value().sizes(), torch::kFloat));
    used.insert(name);
  }
  for (const std::string& name : ckpt.Names()) {
    const bool unused_by_design = name.rfind("pooler.", 0) == 0 || name == "embeddings.position_ids";
    DFAR_CHECK(used.count(name) || unused_by_design, ckpt.Find(name)->file, ": tensor '", name,
               "' is not part of a BertModel with this config");
  }
}

}  // namespace

SentenceEncoder SentenceEncoder::Load(const std::string& dir_name, torch::Device device) {
  const fs::path dir(dir_name);
  DFAR_CHECK(fs::is_directory(dir), "sentence encoder directory '", dir_name,
             "' does not exist (scripts/fetch_encoder.sh caches all-minilm-l6-v2)");
  SentenceEncoder e;
  e.config_ = BertEncoderConfigFromJson((dir / "config.json").string());
  e.normalize_ = ReadModules(dir, e.config_.hidden_size);
  e.max_seq_length_ = ReadMaxSeqLength(dir, e.config_);
  e.tokenizer_ =
      std::make_shared<const WordPieceTokenizer>(WordPieceTokenizer::Load((dir / "tokenizer.json").string()));
  DFAR_CHECK(e.tokenizer_->vocab_size() <= e.config_.vocab_size, (dir / "tokenizer.json").string(), ": ",
             e.tokenizer_->vocab_size(), " tokens but config.json has vocab_size ", e.config_.vocab_size);
  e.bert_ = std::make_shared<BertEncoderImpl>(e.config_);
  LoadWeights(*e.bert_, dir);
  e.bert_->eval();
  e.bert_->to(device);
  e.device_ = device;
  return e;
}

// ids of one batch -> pooled (and normalised) rows [B, H] on the CPU.
torch::Tensor SentenceEncoder::EncodeBatch(const std::vector<std::vector<int32_t>>& ids) const {
  const int64_t b = static_cast<int64_t>(ids.size());
  int64_t t = 0;
  for (const auto& row : ids) t = std::max<int64_t>(t, static_cast<int64_t>(row.size()));
  torch::Tensor input = torch::full({b, t}, tokenizer_->pad_id(), torch::kLong);
  torch::Tensor mask = torch::zeros({b, t}, torch::kFloat);
  auto in = input.accessor<int64_t, 2>();
  auto m = mask.accessor<float, 2>();
  for (int64_t i = 0; i < b; ++i) {
    for (size_t j = 0; j < ids[i].size(); ++j) {
      in[i][j] = ids[i][j];
      m[i][j] = 1.0f;
    }
  }
  input = input.to(device_);
  mask = mask.to(device_);
  const torch::Tensor h = bert_->Forward(input, mask);
  // sentence-transformers' mean pooling: masked sum / max(count, 1e-9).
  const torch::Tensor expanded = mask.unsqueeze(-1).expand(h.sizes());
  torch::Tensor pooled = (h * expanded).sum(1) / expanded.sum(1).clamp_min(1e-9);
  if (normalize_)
    pooled = torch::nn::functional::normalize(pooled, torch::nn::functional::NormalizeFuncOptions().p(2).dim(1));
  return pooled.to(torch::kCPU);
}

torch::Tensor SentenceEncoder::Encode(const std::vector<std::string>& texts, int64_t batch_size) const {
  DFAR_CHECK(batch_size > 0, "SentenceEncoder::Encode: batch_size ", batch_size, " is not positive");
  torch::NoGradGuard no_grad;
  const int64_t n = static_cast<int64_t>(texts.size());
  std::vector<std::vector<int32_t>> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = tokenizer_->Encode(texts[i], max_seq_length_);
  // Longest first, as sentence-transformers sorts, so that batches pad little.
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return ids[a].size() > ids[b].size(); });
  torch::Tensor out = torch::empty({n, dim()}, torch::kFloat);
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t end = std::min(n, start + batch_size);
    std::vector<std::vector<int32_t>> batch;
    for (int64_t k = start; k < end; ++k) batch.push_back(std::move(ids[order[k]]));
    const torch::Tensor rows = EncodeBatch(batch);
    const torch::Tensor where = torch::tensor(std::vector<int64_t>(order.begin() + start, order.begin() + end));
    out.index_copy_(0, where, rows);
  }
  return out;
}

std::vector<double> PairedCosine(const torch::Tensor& a, const torch::Tensor& b) {
  DFAR_CHECK(a.dim() == 2 && a.sizes() == b.sizes(), "PairedCosine: shapes ", ShapeText(a.sizes()), " and ",
             ShapeText(b.sizes()), " are not the same [n, d]");
  const torch::Tensor x = a.to(torch::kCPU, torch::kDouble), y = b.to(torch::kCPU, torch::kDouble);
  const torch::Tensor cos = (x * y).sum(1) / (x.norm(2, 1).clamp_min(1e-8) * y.norm(2, 1).clamp_min(1e-8));
  return std::vector<double>(cos.data_ptr<double>(), cos.data_ptr<double>() + cos.size(0));
}

}  // namespace dfar
