// The shape of a Llama-family decoder.
//
// Owns: every architectural number the decoder needs, read from a Hugging
// Face config.json (llama, mistral, qwen2) or from GGUF metadata. One struct
// covers Llama-2/3 (RoPE theta and Llama-3 rope scaling, GQA, SwiGLU, tied or
// untied embeddings), Mistral (sliding window), Qwen2 (qkv bias), SmolLM2
// (Llama with tied embeddings).
// Failure: throws dfar::Error naming the file and key for a missing or
// invalid field, or an unsupported model_type / rope scaling.
// Thread-safety: plain data.
#pragma once

#include <cstdint>
#include <string>

namespace dfar {

class GgufFile;

struct RopeScaling {
  std::string type;  // "" (none) or "llama3".
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

struct ModelConfig {
  std::string architecture = "llama";  // llama | mistral | qwen2 (HF model_type).
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_heads unless given.
  int64_t max_position = 2048;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_embeddings = false;
  int64_t sliding_window = 0;  // 0: full attention.
  bool qkv_bias = false;
  int64_t bos_id = -1;
  int64_t eos_id = -1;
  // Std of the normal init of a randomly initialised model (HF's
  // initializer_range; model.init random). Not used when weights are loaded.
  double initializer_range = 0.02;

  // Throws naming the first inconsistent field (e.g. heads % kv_heads != 0).
  void Validate(const std::string& source) const;
  // Parameter count (embeddings once if tied).
  int64_t NumParameters() const;
  // Serialises to an HF config.json body (for export).
  std::string ToHfJson() const;
};

ModelConfig ModelConfigFromHfJson(const std::string& path);
ModelConfig ModelConfigFromGguf(const GgufFile& gguf);

}  // namespace dfar
