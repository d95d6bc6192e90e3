#include "dfar/model/name_adapter.h"

#include <regex>
#include <utility>
#include <vector>

#include "dfar/core/error.h"

namespace dfar {
namespace {

// (dfar suffix within a layer, HF suffix, GGUF suffix)
struct LayerName {
  const char* dfar;
  const char* hf;
  const char* gguf;
};

const std::vector<LayerName>& LayerNames() {
  static const std::vector<LayerName> names = {
      {"attn_norm.weight", "input_layernorm.weight", "attn_norm.weight"},
      {"mlp_norm.weight", "post_attention_layernorm.weight", "ffn_norm.weight"},
      {"attn.q.weight", "self_attn.q_proj.weight", "attn_q.weight"},
      {"attn.k.weight", "self_attn.k_proj.weight", "attn_k.weight"},
      {"attn.v.weight", "self_attn.v_proj.weight", "attn_v.weight"},
      {"attn.o.weight", "self_attn.o_proj.weight", "attn_output.weight"},
      {"attn.q.bias", "self_attn.q_proj.bias", "attn_q.bias"},
      {"attn.k.bias", "self_attn.k_proj.bias", "attn_k.bias"},
      {"attn.v.bias", "self_attn.v_proj.bias", "attn_v.bias"},
      {"mlp.gate.weight", "mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up.weight", "mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down.weight", "mlp.down_proj.weight", "ffn_down.weight"},
  };
  return names;
}

const std::vector<std::pair<const char*, std::pair<const char*, const char*>>>& GlobalNames() {
  static const std::vector<std::pair<const char*, std::pair<const char*, const char*>>> names = {
      {"embed.weight", {"model.embed_tokens.weight", "token_embd.weight"}},
      {"norm.weight", {"model.norm.weight", "output_norm.weight"}},
      {"lm_head.weight", {"lm_head.weight", "output.weight"}},
  };
  return names;
}

// Splits "<prefix>N.<rest>" into (N, rest); false if it does not match.
bool SplitLayer(const std::string& name, const std::string& prefix, std::string* index, std::string* rest) {
  static const std::regex re(R"(^(\d+)\.(.+)$)");
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  std::smatch m;
  const std::string tail = name.substr(prefix.size());
  if (!std::regex_match(tail, m, re)) return false;
  *index = m[1];
  *rest = m[2];
  return true;
}

}  // namespace

std::string HfNameFromDfar(const std::string& name) {
  for (const auto& g : GlobalNames())
    if (name == g.first) return g.second.first;
  std::string idx, rest;
  if (SplitLayer(name, "layers.", &idx, &rest))
    for (const auto& l : LayerNames())
      if (rest == l.dfar) return "model.layers." + idx + "." + l.hf;
  DFAR_THROW("parameter '", name, "' has no Hugging Face name");
}

std::string DfarNameFromHf(const std::string& name) {
  for (const auto& g : GlobalNames())
    if (name == g.second.first) return g.first;
  std::string idx, rest;
  if (SplitLayer(name, "model.layers.", &idx, &rest))
    for (const auto& l : LayerNames())
      if (rest == l.hf) return "layers." + idx + "." + l.dfar;
  return "";
}

std::string GgufNameFromDfar(const std::string& name) {
  for (const auto& g : GlobalNames())
    if (name == g.first) return g.second.second;
  std::string idx, rest;
  if (SplitLayer(name, "layers.", &idx, &rest))
    for (const auto& l : LayerNames())
      if (rest == l.dfar) return "blk." + idx + "." + l.gguf;
  DFAR_THROW("parameter '", name, "' has no GGUF name");
}

}  // namespace dfar
