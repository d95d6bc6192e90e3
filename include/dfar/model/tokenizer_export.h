// The GGUF tokenizer as Hugging Face files, beside the weight export
// (dfar/model/export.h), which writes them into an exported model directory.
// Torch-free. Thread-safety: pure functions.
#pragma once

#include <string>

#include "dfar/weights/gguf.h"

namespace dfar {

// The same tokenizer as a Hugging Face `tokenizer.json` body, for export:
// model BPE (vocab, merges as "a b", byte_fallback false, no unk token, so a
// byte missing from the vocab is dropped as here), normalizer null, the
// pre-tokenizer as a Sequence (Digits individual_digits when the GGUF pre
// isolates digits; ByteLevel use_regex true for the GPT-2 split, else Split
// Isolated on the regex and ByteLevel use_regex false), decoder ByteLevel,
// control and user-defined tokens as added_tokens (special true), and a
// post-processor that prepends BOS iff add_bos_token (ByteLevel otherwise).
// LoadBpeTokenizerFromHfJson on it (with the config below beside it) encodes
// exactly as LoadBpeTokenizerFromGguf. Throws as LoadBpeTokenizerFromGguf does,
// or naming the token that is not valid UTF-8.
std::string GgufTokenizerToHfJson(const GgufFile& gguf);

// The matching `tokenizer_config.json` body: bos/eos/pad tokens (null when the
// GGUF has none), add_bos_token, tokenizer_class PreTrainedTokenizerFast,
// model_max_length from <arch>.context_length, and chat_template from
// tokenizer.chat_template when present.
std::string GgufTokenizerConfigToHfJson(const GgufFile& gguf);

}  // namespace dfar
