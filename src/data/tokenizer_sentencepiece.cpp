#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <unordered_map>

#include "dfar/core/error.h"
#include "dfar/data/tokenizer.h"

namespace dfar {
namespace {

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    DFAR_CHECK(std::filesystem::is_regular_file(path), "SentencePiece model '", path, "' does not exist");
    auto status = processor_.Load(path);
    DFAR_CHECK(status.ok(), "cannot load SentencePiece model '", path, "': ", status.ToString());
  }

  std::vector<int32_t> Encode(std::string_view text) const override {
    std::vector<int> ids;
    auto status = processor_.Encode(text, &ids);
    DFAR_CHECK(status.ok(), "SentencePiece encode failed (", path_, "): ", status.ToString());
    return std::vector<int32_t>(ids.begin(), ids.end());
  }

  std::string Decode(const std::vector<int32_t>& ids) const override {
    for (int32_t id : ids) CheckId(id);
    std::string text;
    auto status = processor_.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
    DFAR_CHECK(status.ok(), "SentencePiece decode failed (", path_, "): ", status.ToString());
    return text;
  }

  std::string Piece(int32_t id) const override {
    CheckId(id);
    return processor_.IdToPiece(id);
  }

  int64_t vocab_size() const override { return processor_.GetPieceSize(); }
  int32_t bos_id() const override { return processor_.bos_id(); }
  int32_t eos_id() const override { return processor_.eos_id(); }
  // Llama-2 ships no pad piece; padding is masked out anyway, so any valid id will do.
  int32_t pad_id() const override { return processor_.pad_id() >= 0 ? processor_.pad_id() : processor_.eos_id(); }
  std::string kind() const override { return "sentencepiece"; }

 private:
  // SentencePiece asserts on ids outside the vocabulary; we owe users a message.
  void CheckId(int32_t id) const {
    DFAR_CHECK(id >= 0 && id < processor_.GetPieceSize(), "token id ", id, " is outside the vocabulary [0, ",
               processor_.GetPieceSize(), ") of ", path_);
  }

  std::string path_;
  sentencepiece::SentencePieceProcessor processor_;
};

// Feeds the trainer from memory, so no temporary corpus file is needed.
class VectorSentenceIterator : public sentencepiece::SentenceIterator {
 public:
  explicit VectorSentenceIterator(const std::vector<std::string>& texts) : texts_(texts) { SkipEmpty(); }
  bool done() const override { return index_ >= texts_.size(); }
  void Next() override {
    ++index_;
    SkipEmpty();
  }
  const std::string& value() const override { return texts_[index_]; }
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  void SkipEmpty() {
    while (index_ < texts_.size() && texts_[index_].empty()) ++index_;
  }
  const std::vector<std::string>& texts_;
  size_t index_ = 0;
};

// 256 byte pieces (byte_fallback) + pad/bos/eos/unk + the two ChatML markers.
constexpr int kMinVocab = 256 + 4 + 2 + 1;

// Mirrors Llama-2's tokenizer (identity normalisation, kept whitespace, byte
// fallback, split digits), so every UTF-8 string round-trips exactly.
std::unordered_map<std::string, std::string> TrainerArgs(int vocab_size, const std::string& prefix, size_t count) {
  return {
      {"model_prefix", prefix},
      {"model_type", "unigram"},
      {"vocab_size", std::to_string(vocab_size)},
      {"pad_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"unk_id", "3"},
      {"user_defined_symbols", "<|im_start|>,<|im_end|>"},
      {"character_coverage", "1.0"},
      {"byte_fallback", "true"},
      {"split_digits", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "true"},
      // A small corpus may not support vocab_size pieces; take what it supports.
      {"hard_vocab_limit", "false"},
      // Determinism: read every sentence, in order, on one thread.
      {"input_sentence_size", std::to_string(count)},
      {"shuffle_input_sentence", "false"},
      {"num_threads", "1"},
      {"max_sentence_length", "65536"},
      {"minloglevel", "1"},
  };
}

}  // namespace

std::unique_ptr<Tokenizer> LoadSentencePieceTokenizer(const std::string& path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

std::string TrainSentencePieceTokenizer(const std::vector<std::string>& texts, int vocab_size,
                                        const std::string& out_dir, uint64_t seed) {
  DFAR_CHECK(vocab_size >= kMinVocab, "tokenizer vocab_size ", vocab_size, " is too small: byte fallback and the ",
             "special pieces need at least ", kMinVocab);
  VectorSentenceIterator sentences(texts);
  DFAR_CHECK(!sentences.done(), "cannot train a tokenizer on no text");
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  DFAR_CHECK(!ec, "cannot create tokenizer directory '", out_dir, "': ", ec.message());
  const std::string prefix = (std::filesystem::path(out_dir) / "tokenizer").string();
  // Global to SentencePiece; unigram training draws from it only when sampling
  // sentences. All-ones is reserved there for "seed from std::random_device".
  unsigned int spm_seed = static_cast<unsigned int>(seed ^ (seed >> 32));
  sentencepiece::SetRandomGeneratorSeed(spm_seed == ~0u ? 0u : spm_seed);
  auto status = sentencepiece::SentencePieceTrainer::Train(TrainerArgs(vocab_size, prefix, texts.size()), &sentences);
  DFAR_CHECK(status.ok(), "SentencePiece training failed: ", status.ToString());
  return prefix + ".model";
}

}  // namespace dfar
