#include "dfar/model/tokenizer_export.h"

#include <nlohmann/json.hpp>

#include "dfar/core/error.h"
#include "dfar/data/bpe_tokenizer.h"

namespace dfar {
namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------
// Export to HF tokenizer.json. The loader above is the reference: every field
// written here is one that LoadBpeTokenizerFromHfJson reads back to the same
// BpeVocab, and that HF `tokenizers` 0.19 interprets the same way.

json HfModelSection(const BpeVocab& v) {
  json vocab = json::object();
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (!vocab.contains(v.tokens[i])) vocab[v.tokens[i]] = i;  // A duplicate keeps its first id (HF's choice too).
  }
  json merges = json::array();
  for (const auto& [left, right] : v.merges) merges.push_back(left + " " + right);  // 0.19 reads only "a b".
  return {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", nullptr},
          {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr},
          {"fuse_unk", false},
          {"byte_fallback", false},
          {"ignore_merges", v.ignore_merges},
          {"vocab", std::move(vocab)},
          {"merges", std::move(merges)}};
}

json HfByteLevel(bool add_prefix_space, bool trim_offsets, bool use_regex) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", add_prefix_space},
          {"trim_offsets", trim_offsets},
          {"use_regex", use_regex}};
}

json HfPreTokenizer(const BpePreTokenizer& pre) {
  json steps = json::array();
  if (pre.isolate_digits) steps.push_back({{"type", "Digits"}, {"individual_digits", true}});
  if (pre.pattern == kGpt2SplitPattern) {
    steps.push_back(HfByteLevel(false, true, true));  // ByteLevel's own regex is the GPT-2 split.
  } else {
    steps.push_back(
        {{"type", "Split"}, {"pattern", {{"Regex", pre.pattern}}}, {"behavior", "Isolated"}, {"invert", false}});
    steps.push_back(HfByteLevel(false, true, false));
  }
  return {{"type", "Sequence"}, {"pretokenizers", std::move(steps)}};
}

json HfAddedTokens(const BpeVocab& v) {
  json added = json::array();
  for (int32_t id : v.added_ids) {
    added.push_back({{"id", id},
                     {"content", v.tokens.at(id)},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  return added;
}

// A special token's text; null for none (an id outside the vocab counts as none).
json TokenOrNull(const BpeVocab& v, int32_t id) {
  return id >= 0 && static_cast<size_t>(id) < v.tokens.size() ? json(v.tokens[id]) : json(nullptr);
}

// BOS is part of the tokenizer's output in HF only through the post-processor.
json HfPostProcessor(const BpeVocab& v) {
  if (!v.add_bos || TokenOrNull(v, v.bos_id).is_null()) return HfByteLevel(true, false, true);
  const std::string bos = v.tokens[v.bos_id];
  json special = {{"SpecialToken", {{"id", bos}, {"type_id", 0}}}};
  json seq_a = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  json seq_b = {{"Sequence", {{"id", "B"}, {"type_id", 1}}}};
  return {{"type", "TemplateProcessing"},
          {"single", {special, seq_a}},
          {"pair", {special, seq_a, special, seq_b}},
          {"special_tokens", {{bos, {{"id", bos}, {"ids", {v.bos_id}}, {"tokens", {bos}}}}}}};
}

// Dumps `j`; a token that is not valid UTF-8 cannot be written as JSON.
std::string DumpForExport(const json& j, const std::string& path) {
  try {
    return j.dump(2);
  } catch (const json::exception& e) {
    DFAR_THROW(path, ": cannot export the tokenizer to JSON: ", e.what());
  }
}

}  // namespace

std::string GgufTokenizerToHfJson(const GgufFile& g) {
  const BpeVocab v = ReadGgufVocab(g);
  json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = HfAddedTokens(v);
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = HfPreTokenizer(v.pre);
  j["post_processor"] = HfPostProcessor(v);
  j["decoder"] = HfByteLevel(true, true, true);
  j["model"] = HfModelSection(v);
  return DumpForExport(j, g.path());
}

std::string GgufTokenizerConfigToHfJson(const GgufFile& g) {
  const BpeVocab v = ReadGgufVocab(g);
  json j;
  j["tokenizer_class"] = "PreTrainedTokenizerFast";
  j["add_bos_token"] = v.add_bos && !TokenOrNull(v, v.bos_id).is_null();
  j["add_eos_token"] = false;
  j["bos_token"] = TokenOrNull(v, v.bos_id);
  j["eos_token"] = TokenOrNull(v, v.eos_id);
  j["pad_token"] = TokenOrNull(v, v.pad_id);
  j["unk_token"] = nullptr;
  j["clean_up_tokenization_spaces"] = false;
  const std::string context_key = g.GetString("general.architecture", "llama") + ".context_length";
  if (g.Has(context_key)) j["model_max_length"] = g.GetI64(context_key);
  if (g.Has("tokenizer.chat_template")) j["chat_template"] = g.GetString("tokenizer.chat_template");
  return DumpForExport(j, g.path());
}

}  // namespace dfar
