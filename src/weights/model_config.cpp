#include "dfar/weights/model_config.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>

#include "dfar/core/error.h"
#include "dfar/weights/gguf.h"

namespace dfar {
namespace {

using nlohmann::json;

int64_t RequireInt(const json& j, const char* key, const std::string& src) {
  DFAR_CHECK(j.contains(key) && j[key].is_number_integer(), src, ": key '", key, "' is missing or not an integer");
  return j[key].get<int64_t>();
}

void ReadRopeScaling(const json& j, ModelConfig& c, const std::string& src) {
  if (!j.contains("rope_scaling") || j["rope_scaling"].is_null()) return;
  const json& rs = j["rope_scaling"];
  const std::string type = rs.value("rope_type", rs.value("type", std::string()));
  DFAR_CHECK(type == "llama3" || type == "default", src, ": rope_scaling type '", type,
             "' is not supported (supported: llama3)");
  if (type == "default") return;
  c.rope_scaling.type = type;
  c.rope_scaling.factor = rs.value("factor", 8.0);
  c.rope_scaling.low_freq_factor = rs.value("low_freq_factor", 1.0);
  c.rope_scaling.high_freq_factor = rs.value("high_freq_factor", 4.0);
  c.rope_scaling.original_max_position = rs.value("original_max_position_embeddings", int64_t{8192});
}

int64_t OptionalTokenId(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number_integer()) return -1;
  return j[key].get<int64_t>();
}

}  // namespace

void ModelConfig::Validate(const std::string& source) const {
  DFAR_CHECK(vocab_size > 0 && hidden_size > 0 && intermediate_size > 0 && num_layers > 0, source,
             ": vocab_size, hidden_size, intermediate_size and num_layers must be positive");
  DFAR_CHECK(num_heads > 0 && num_kv_heads > 0 && num_heads % num_kv_heads == 0, source, ": num_heads (", num_heads,
             ") must be a positive multiple of num_key_value_heads (", num_kv_heads, ")");
  DFAR_CHECK(head_dim > 0 && head_dim % 2 == 0, source, ": head_dim (", head_dim, ") must be positive and even");
  DFAR_CHECK(rms_norm_eps > 0 && rope_theta > 0, source, ": rms_norm_eps and rope_theta must be positive");
  DFAR_CHECK(vocab_size < (int64_t{1} << 24) && hidden_size < (int64_t{1} << 20) && num_layers < 4096, source,
             ": implausibly large model dimensions");
}

int64_t ModelConfig::NumParameters() const {
  const int64_t q = hidden_size * num_heads * head_dim;
  const int64_t kv = 2 * hidden_size * num_kv_heads * head_dim;
  const int64_t o = num_heads * head_dim * hidden_size;
  const int64_t bias = qkv_bias ? (num_heads + 2 * num_kv_heads) * head_dim : 0;
  const int64_t mlp = 3 * hidden_size * intermediate_size;
  const int64_t layer = q + kv + o + bias + mlp + 2 * hidden_size;
  const int64_t embed = vocab_size * hidden_size * (tie_embeddings ? 1 : 2);
  return num_layers * layer + embed + hidden_size;
}

std::string ModelConfig::ToHfJson() const {
  json j;
  const bool qwen = architecture == "qwen2";
  const bool mistral = architecture == "mistral";
  j["architectures"] = {qwen ? "Qwen2ForCausalLM" : mistral ? "MistralForCausalLM" : "LlamaForCausalLM"};
  j["model_type"] = architecture;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_layers;
  j["num_attention_heads"] = num_heads;
  j["num_key_value_heads"] = num_kv_heads;
  j["head_dim"] = head_dim;
  j["max_position_embeddings"] = max_position;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  j["tie_word_embeddings"] = tie_embeddings;
  j["hidden_act"] = "silu";
  j["torch_dtype"] = "float32";
  if (mistral) j["sliding_window"] = sliding_window > 0 ? json(sliding_window) : json(nullptr);
  if (!mistral && !qwen) j["attention_bias"] = false;
  if (bos_id >= 0) j["bos_token_id"] = bos_id;
  if (eos_id >= 0) j["eos_token_id"] = eos_id;
  if (!rope_scaling.type.empty()) {
    j["rope_scaling"] = {{"rope_type", rope_scaling.type},
                         {"factor", rope_scaling.factor},
                         {"low_freq_factor", rope_scaling.low_freq_factor},
                         {"high_freq_factor", rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", rope_scaling.original_max_position}};
  }
  return j.dump(2);
}

ModelConfig ModelConfigFromHfJson(const std::string& path) {
  std::ifstream in(path);
  DFAR_CHECK(in.good(), "cannot open model config '", path, "'");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    DFAR_THROW(path, ": invalid JSON: ", e.what());
  }
  ModelConfig c;
  c.architecture = j.value("model_type", std::string("llama"));
  DFAR_CHECK(c.architecture == "llama" || c.architecture == "mistral" || c.architecture == "qwen2", path,
             ": model_type '", c.architecture, "' is not a supported Llama-family type (llama, mistral, qwen2)");
  c.vocab_size = RequireInt(j, "vocab_size", path);
  c.hidden_size = RequireInt(j, "hidden_size", path);
  c.intermediate_size = RequireInt(j, "intermediate_size", path);
  c.num_layers = RequireInt(j, "num_hidden_layers", path);
  c.num_heads = RequireInt(j, "num_attention_heads", path);
  c.num_kv_heads = j.value("num_key_value_heads", c.num_heads);
  c.head_dim = j.contains("head_dim") && j["head_dim"].is_number_integer() ? j["head_dim"].get<int64_t>()
                                                                           : c.hidden_size / c.num_heads;
  c.max_position = j.value("max_position_embeddings", int64_t{2048});
  c.rms_norm_eps = j.value("rms_norm_eps", 1e-5);
  c.initializer_range = j.value("initializer_range", 0.02);
  c.rope_theta = j.value("rope_theta", 10000.0);
  c.tie_embeddings = j.value("tie_word_embeddings", c.architecture == "qwen2");
  const bool window_on = c.architecture == "mistral" || j.value("use_sliding_window", false);
  if (window_on && j.contains("sliding_window") && j["sliding_window"].is_number_integer())
    c.sliding_window = j["sliding_window"].get<int64_t>();
  c.qkv_bias = c.architecture == "qwen2" || j.value("attention_bias", false);
  c.bos_id = OptionalTokenId(j, "bos_token_id");
  c.eos_id = OptionalTokenId(j, "eos_token_id");
  ReadRopeScaling(j, c, path);
  c.Validate(path);
  return c;
}

}  // namespace dfar

namespace dfar {

ModelConfig ModelConfigFromGguf(const GgufFile& g) {
  const std::string arch = g.GetString("general.architecture");
  DFAR_CHECK(arch == "llama" || arch == "qwen2", g.path(), ": general.architecture '", arch,
             "' is not supported (llama, qwen2)");
  const std::string p = arch + ".";
  ModelConfig c;
  c.architecture = arch;
  c.hidden_size = g.GetI64(p + "embedding_length");
  c.intermediate_size = g.GetI64(p + "feed_forward_length");
  c.num_layers = g.GetI64(p + "block_count");
  c.num_heads = g.GetI64(p + "attention.head_count");
  c.num_kv_heads = g.GetI64(p + "attention.head_count_kv", c.num_heads);
  c.head_dim = g.GetI64(p + "attention.key_length", c.hidden_size / std::max<int64_t>(c.num_heads, 1));
  c.max_position = g.GetI64(p + "context_length", 2048);
  c.rms_norm_eps = g.GetF32(p + "attention.layer_norm_rms_epsilon", 1e-5f);
  c.rope_theta = g.GetF32(p + "rope.freq_base", 10000.0f);
  const auto* embd = g.FindTensor("token_embd.weight");
  DFAR_CHECK(embd != nullptr && embd->shape.size() == 2, g.path(), ": tensor 'token_embd.weight' is missing");
  c.vocab_size = embd->shape[1];
  c.tie_embeddings = g.FindTensor("output.weight") == nullptr;
  c.qkv_bias = g.FindTensor("blk.0.attn_q.bias") != nullptr;
  c.bos_id = g.GetI64("tokenizer.ggml.bos_token_id", -1);
  c.eos_id = g.GetI64("tokenizer.ggml.eos_token_id", -1);
  c.Validate(g.path());
  return c;
}

}  // namespace dfar
