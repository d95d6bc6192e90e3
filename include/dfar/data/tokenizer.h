// The tokenizer interface, and the SentencePiece implementation.
//
// Owns: text <-> ids. Implementations: SentencePiece (Llama-2, Mistral,
// and small models trained by `dfar tokenizer train`) here; byte-level BPE
// (GPT-2 / SmolLM2 / Llama-3) in bpe_tokenizer.h.
// Failure: loading throws dfar::Error naming the file and the reason.
// Thread-safety: Encode/Decode are const and safe to call concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dfar {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Encodes plain text; no BOS/EOS are added.
  virtual std::vector<int32_t> Encode(std::string_view text) const = 0;
  virtual std::string Decode(const std::vector<int32_t>& ids) const = 0;
  // The text of one token, for previews ("▁the", "Ġthe").
  virtual std::string Piece(int32_t id) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 if none.
  // Whether sequences start with BOS (SentencePiece Llama models: yes; GPT-2
  // style BPE such as SmolLM2: only if its metadata says so). Having a BOS id
  // is not enough: SmolLM2 has one (<|im_start|>) and never prepends it. The
  // one prompt recipe (PromptIds, collate.h) reads only this.
  virtual bool add_bos() const = 0;
  virtual int32_t eos_id() const = 0;  // -1 if none.
  virtual int32_t pad_id() const = 0;  // Falls back to eos_id when the vocab has no pad.
  // "sentencepiece", "bpe".
  virtual std::string kind() const = 0;
};

// Loads a SentencePiece model file (tokenizer.model).
std::unique_ptr<Tokenizer> LoadSentencePieceTokenizer(const std::string& path);

// Trains a SentencePiece (unigram) model on `texts` with `vocab_size` pieces,
// writing `<out_dir>/tokenizer.model` and `tokenizer.vocab`. Reserves ids
// 0 pad, 1 bos, 2 eos, 3 unk. Returns the model path.
std::string TrainSentencePieceTokenizer(const std::vector<std::string>& texts, int vocab_size,
                                        const std::string& out_dir, uint64_t seed);

}  // namespace dfar
