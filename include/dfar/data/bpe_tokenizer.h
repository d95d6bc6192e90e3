// Byte-level BPE tokenizer (GPT-2, SmolLM2, Llama-3, Qwen2 vocabularies).
//
// Owns: a vocabulary of byte-level token strings, ranked merges, added
// (special) tokens and a pre-tokenizer; implements dfar::Tokenizer with
// kind() == "bpe". Encode() matches added tokens in the raw text first
// (leftmost, longest), emits them whole, splits the rest with the
// pre-tokenizer regex (PCRE2, Unicode properties), maps each piece's bytes to
// the GPT-2 byte alphabet and merges by rank, the way HF `tokenizers` does.
// A byte with no token of its own is dropped (SmolLM2 has none for 0x04,
// 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, 0xF5..0xFF), as HF and
// llama.cpp do; every other text round-trips through Encode and Decode.
// Decode() maps the byte alphabet back to the raw bytes (which need not be
// valid UTF-8 for a partial sequence) and emits added tokens verbatim.
//
// Failure: loaders throw dfar::Error naming the file and the reason (not a
// BPE model, unknown pre-tokenizer, malformed merge); Decode/Piece throw for
// an id outside [0, vocab_size()).
// Thread-safety: Encode/Decode are const and safe to call concurrently (the
// merge cache is guarded by a mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dfar/data/tokenizer.h"

namespace dfar {

class GgufFile;

// How text is cut into pieces before BPE.
struct BpePreTokenizer {
  // Isolate every Unicode number character first (HF `Digits(individual_digits
  // = true)`, llama.cpp "smollm"); the regex then runs on the pieces between.
  bool isolate_digits = false;
  // PCRE2 pattern (UTF + UCP); matches and the gaps between them are pieces.
  std::string pattern;
};

// The GPT-2 split; SmolLM2 uses it after isolating digits.
extern const char* const kGpt2SplitPattern;
// Llama-3's split (numbers in runs of at most 3 digits).
extern const char* const kLlama3SplitPattern;
// Qwen2's split (single digits).
extern const char* const kQwen2SplitPattern;

// The pre-tokenizer llama.cpp uses for a GGUF `tokenizer.ggml.pre` value
// ("gpt2", "smollm", "llama-bpe", "qwen2", ...). Throws for unknown names.
BpePreTokenizer BpePreTokenizerForGgufPre(const std::string& pre);

// Everything a BpeTokenizer is built from.
struct BpeVocab {
  std::vector<std::string> tokens;                          // id -> token text (byte alphabet; added tokens raw).
  std::vector<std::pair<std::string, std::string>> merges;  // (left, right); rank = position.
  std::vector<int32_t> added_ids;  // Tokens matched whole in the text (special or user-defined).
  BpePreTokenizer pre;
  bool ignore_merges = false;  // Emit a piece found whole in the vocab without merging (Llama-3).
  int32_t bos_id = -1;
  bool add_bos = false;  // GGUF tokenizer.ggml.add_bos_token / tokenizer_config add_bos_token.
  int32_t eos_id = -1;
  int32_t pad_id = -1;  // -1: falls back to eos_id.
  int32_t unk_id = -1;  // Emitted for a byte missing from the vocab; -1 drops it (as HF does).
};

// Builds a tokenizer; `source` names the origin in error messages.
std::unique_ptr<Tokenizer> MakeBpeTokenizer(BpeVocab vocab, const std::string& source);

// Loads HF `tokenizer.json` (model.type "BPE", ByteLevel pre-tokenization).
// bos/eos/pad come from a sibling `tokenizer_config.json` when present.
std::unique_ptr<Tokenizer> LoadBpeTokenizerFromHfJson(const std::string& path);

// Loads the tokenizer a GGUF file carries (tokenizer.ggml.model == "gpt2").
// Token types 3 (control) and 4 (user-defined) become added tokens.
std::unique_ptr<Tokenizer> LoadBpeTokenizerFromGguf(const GgufFile& gguf);

// The vocabulary, merges, pre-tokenizer and special ids a GGUF file
// carries (tokenizer.ggml.*). Throws naming the file and key. The HF export
// of it lives beside the weight export (dfar/model/tokenizer_export.h).
BpeVocab ReadGgufVocab(const GgufFile& gguf);

}  // namespace dfar
