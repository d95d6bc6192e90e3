// A sentence-transformers encoder (BERT + mean pooling + L2 normalisation),
// for the evaluator's reason similarity. Built for all-MiniLM-L6-v2
// (scripts/fetch_encoder.sh caches it); any BERT directory with the same
// sentence-transformers layout loads.
//
// Owns: the directory's tokenizer (WordPieceTokenizer), the BERT weights and
// the pipeline sentence-transformers runs for modules.json = [Transformer,
// Pooling (mean), Normalize]:
//   ids = tokenizer(text), truncated to max_seq_length ids
//         (sentence_bert_config.json; 256 for all-MiniLM-L6-v2);
//   h   = BERT(ids): word + position + token-type-0 embeddings, LayerNorm,
//         then post-LN layers: x = LN(x + Attn(x)), x = LN(x + W2 gelu(W1 x)),
//         GELU with erf, attention masked to the real tokens, LayerNorm eps
//         from config.json;
//   e   = sum over real tokens of h / their count (mean pooling), then
//         e / max(|e|, 1e-12) when modules.json lists Normalize.
// Checked against sentence-transformers 3.0.1 on 28 sentences
// (tests/model/sentence_encoder_test.cpp, fixture made by
// tools/make_encoder_golden.py): cosine >= 0.9999 for every one; measured
// 1 - min cosine = 4e-13 (fp32, CPU, libtorch 1.13.1).
//
// Files read from `dir`: config.json, model.safetensors (via dfar's
// safetensors reader), tokenizer.json, modules.json,
// sentence_bert_config.json and the pooling module's config.json.
// Failure: Load throws dfar::Error naming the file and the key or tensor
// (missing or misshapen tensor, a non-BERT config, an activation other than
// erf GELU, pooling other than mean, a module type other than the three).
// Thread-safety: immutable after Load. Encode is const and may be called from
// several threads at once: the weights are only read, no state is kept
// between calls, and autograd is off inside (NoGradGuard is per thread).
// Each call uses libtorch's intra-op thread pool (torch::set_num_threads).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dfar/data/wordpiece_tokenizer.h"

namespace dfar {

// config.json of a BertModel (HF names in the comments).
struct BertEncoderConfig {
  int64_t vocab_size = 30522;             // vocab_size
  int64_t hidden_size = 384;              // hidden_size
  int64_t num_layers = 6;                 // num_hidden_layers
  int64_t num_heads = 12;                 // num_attention_heads
  int64_t intermediate_size = 1536;       // intermediate_size
  int64_t max_position_embeddings = 512;  // max_position_embeddings
  int64_t type_vocab_size = 2;            // type_vocab_size
  double layer_norm_eps = 1e-12;          // layer_norm_eps
};

// Reads config.json; throws unless it describes a BertModel this code runs.
BertEncoderConfig BertEncoderConfigFromJson(const std::string& path);

class BertEncoderImpl;  // The transformer (sentence_encoder.cpp).

class SentenceEncoder {
 public:
  // Loads a sentence-transformers directory; weights go to `device` in fp32.
  static SentenceEncoder Load(const std::string& dir, torch::Device device = torch::kCPU);

  // One embedding per text: [texts.size(), dim()] float32 on the CPU, rows of
  // unit length when normalize(). Texts are grouped by token count into
  // batches of at most batch_size (padding to the longest in each batch,
  // masked, so the grouping does not change a row beyond rounding).
  torch::Tensor Encode(const std::vector<std::string>& texts, int64_t batch_size = 32) const;

  int64_t dim() const { return config_.hidden_size; }
  int64_t max_seq_length() const { return max_seq_length_; }
  bool normalize() const { return normalize_; }
  const BertEncoderConfig& config() const { return config_; }
  const WordPieceTokenizer& tokenizer() const { return *tokenizer_; }
  torch::Device device() const { return device_; }

 private:
  SentenceEncoder() = default;
  torch::Tensor EncodeBatch(const std::vector<std::vector<int32_t>>& ids) const;

  BertEncoderConfig config_;
  std::shared_ptr<const WordPieceTokenizer> tokenizer_;
  std::shared_ptr<BertEncoderImpl> bert_;
  int64_t max_seq_length_ = 256;
  bool normalize_ = true;
  torch::Device device_ = torch::kCPU;
};

// Cosine similarity of row i of `a` with row i of `b` for every i (both
// [n, d]; computed in float64): a.b / (max(|a|, 1e-8) max(|b|, 1e-8)), so a
// zero row scores 0. For Encode's unit rows it is the dot product. Throws
// unless the shapes match.
std::vector<double> PairedCosine(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace dfar
