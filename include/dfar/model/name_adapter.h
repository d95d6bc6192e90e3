// The one mapping between dfar parameter names and external names.
//
// dfar names:  embed.weight, layers.N.attn_norm.weight, layers.N.attn.{q,k,v,o}.{weight,bias},
//              layers.N.mlp_norm.weight, layers.N.mlp.{gate,up,down}.weight, norm.weight, lm_head.weight
// HF names:    model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight, ...
// GGUF names:  token_embd.weight, blk.N.attn_q.weight, blk.N.ffn_gate.weight, output.weight, ...
// Failure: the To* functions throw dfar::Error for a name they cannot map;
// FromHf/FromGguf return "" for names dfar does not use.
#pragma once

#include <string>

namespace dfar {

std::string HfNameFromDfar(const std::string& dfar_name);
std::string DfarNameFromHf(const std::string& hf_name);
std::string GgufNameFromDfar(const std::string& dfar_name);

}  // namespace dfar
