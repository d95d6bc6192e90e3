// libdfar_spm.so: the C ABI of include/dfar/data/spm_shim.h over SentencePiece.
//
// The only code in dfar that links libsentencepiece (and its embedded
// protobuf-lite 3.14). dfar dlopen()s it with RTLD_LOCAL | RTLD_DEEPBIND; see
// the header for why. Nothing here may throw across the C boundary: every
// entry point catches everything and reports it as text.
#include "dfar/data/spm_shim.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#define DFAR_SPM_EXPORT extern "C" __attribute__((visibility("default")))

struct dfar_spm_model {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

// A malloc'd, NUL-terminated copy of s[0, len); nullptr if out of memory.
char* CopyOut(const char* s, size_t len) {
  char* out = static_cast<char*>(std::malloc(len + 1));
  if (out == nullptr) return nullptr;
  if (len > 0) std::memcpy(out, s, len);
  out[len] = '\0';
  return out;
}

void SetError(char** err, const std::string& message) {
  if (err != nullptr) *err = CopyOut(message.data(), message.size());
}

// Runs body() and turns any exception into an error return.
template <typename Body>
int Guarded(char** err, const char* what, Body&& body) {
  if (err != nullptr) *err = nullptr;
  try {
    return body();
  } catch (const std::bad_alloc&) {
    SetError(err, std::string(what) + ": out of memory");
  } catch (const std::exception& e) {
    SetError(err, std::string(what) + ": " + e.what());
  } catch (...) {
    SetError(err, std::string(what) + ": unknown C++ exception");
  }
  return 1;
}

// Feeds the trainer from memory, so no temporary corpus file is needed.
class ArraySentenceIterator : public sentencepiece::SentenceIterator {
 public:
  ArraySentenceIterator(const char* const* sentences, const size_t* lens, size_t n)
      : sentences_(sentences), lens_(lens), n_(n) {
    SkipEmpty();
  }
  bool done() const override { return index_ >= n_; }
  void Next() override {
    ++index_;
    SkipEmpty();
  }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  void SkipEmpty() {
    while (index_ < n_ && lens_[index_] == 0) ++index_;
    if (index_ < n_) value_.assign(sentences_[index_], lens_[index_]);
  }
  const char* const* sentences_;
  const size_t* lens_;
  size_t n_;
  size_t index_ = 0;
  std::string value_;
};

}  // namespace

DFAR_SPM_EXPORT int dfar_spm_abi_version(void) {
  return DFAR_SPM_ABI_VERSION;
}

DFAR_SPM_EXPORT void dfar_spm_free_buffer(void* p) {
  std::free(p);
}

DFAR_SPM_EXPORT int dfar_spm_load(const char* path, dfar_spm_model** out, char** err) {
  return Guarded(err, "dfar_spm_load", [&] {
    if (path == nullptr || out == nullptr) throw std::invalid_argument("null argument");
    *out = nullptr;
    auto model = std::make_unique<dfar_spm_model>();
    auto status = model->processor.Load(path);
    if (!status.ok()) {
      SetError(err, status.ToString());
      return 1;
    }
    *out = model.release();
    return 0;
  });
}

DFAR_SPM_EXPORT void dfar_spm_free(dfar_spm_model* model) {
  delete model;
}

DFAR_SPM_EXPORT int dfar_spm_encode(const dfar_spm_model* model, const char* text, size_t len, int32_t** ids, size_t* n,
                                    char** err) {
  return Guarded(err, "dfar_spm_encode", [&] {
    if (model == nullptr || ids == nullptr || n == nullptr || (text == nullptr && len > 0)) {
      throw std::invalid_argument("null argument");
    }
    *ids = nullptr;
    *n = 0;
    std::vector<int> pieces;
    auto status = model->processor.Encode(std::string_view(text == nullptr ? "" : text, len), &pieces);
    if (!status.ok()) {
      SetError(err, status.ToString());
      return 1;
    }
    if (!pieces.empty()) {
      auto* buffer = static_cast<int32_t*>(std::malloc(pieces.size() * sizeof(int32_t)));
      if (buffer == nullptr) throw std::bad_alloc();
      for (size_t i = 0; i < pieces.size(); ++i) buffer[i] = static_cast<int32_t>(pieces[i]);
      *ids = buffer;
      *n = pieces.size();
    }
    return 0;
  });
}

DFAR_SPM_EXPORT int dfar_spm_decode(const dfar_spm_model* model, const int32_t* ids, size_t n, char** text, size_t* len,
                                    char** err) {
  return Guarded(err, "dfar_spm_decode", [&] {
    if (model == nullptr || text == nullptr || len == nullptr || (ids == nullptr && n > 0)) {
      throw std::invalid_argument("null argument");
    }
    *text = nullptr;
    *len = 0;
    std::vector<int> pieces(ids, ids + n);
    std::string decoded;
    auto status = model->processor.Decode(pieces, &decoded);
    if (!status.ok()) {
      SetError(err, status.ToString());
      return 1;
    }
    *text = CopyOut(decoded.data(), decoded.size());
    if (*text == nullptr) throw std::bad_alloc();
    *len = decoded.size();
    return 0;
  });
}

DFAR_SPM_EXPORT int dfar_spm_id_to_piece(const dfar_spm_model* model, int32_t id, char** piece, size_t* len,
                                         char** err) {
  return Guarded(err, "dfar_spm_id_to_piece", [&] {
    if (model == nullptr || piece == nullptr || len == nullptr) throw std::invalid_argument("null argument");
    *piece = nullptr;
    *len = 0;
    if (id < 0 || id >= model->processor.GetPieceSize()) throw std::out_of_range("id out of range");
    const std::string& s = model->processor.IdToPiece(id);
    *piece = CopyOut(s.data(), s.size());
    if (*piece == nullptr) throw std::bad_alloc();
    *len = s.size();
    return 0;
  });
}

DFAR_SPM_EXPORT int32_t dfar_spm_piece_to_id(const dfar_spm_model* model, const char* piece, size_t len) {
  if (model == nullptr || (piece == nullptr && len > 0)) return -1;
  try {
    return model->processor.PieceToId(std::string_view(piece == nullptr ? "" : piece, len));
  } catch (...) {
    return -1;
  }
}

// The getters below only read ints from a loaded model; guard anyway.
#define DFAR_SPM_GETTER(name, expr)                           \
  DFAR_SPM_EXPORT int32_t name(const dfar_spm_model* model) { \
    if (model == nullptr) return -1;                          \
    try {                                                     \
      return static_cast<int32_t>(model->processor.expr);     \
    } catch (...) {                                           \
      return -1;                                              \
    }                                                         \
  }
DFAR_SPM_GETTER(dfar_spm_vocab_size, GetPieceSize())
DFAR_SPM_GETTER(dfar_spm_bos_id, bos_id())
DFAR_SPM_GETTER(dfar_spm_eos_id, eos_id())
DFAR_SPM_GETTER(dfar_spm_pad_id, pad_id())
DFAR_SPM_GETTER(dfar_spm_unk_id, unk_id())
#undef DFAR_SPM_GETTER

DFAR_SPM_EXPORT int dfar_spm_train(const char* const* sentences, const size_t* sentence_lens, size_t n_sentences,
                                   const char* const* keys, const char* const* values, size_t n_args, int has_seed,
                                   uint32_t seed, char** err) {
  return Guarded(err, "dfar_spm_train", [&] {
    if ((n_sentences > 0 && (sentences == nullptr || sentence_lens == nullptr)) ||
        (n_args > 0 && (keys == nullptr || values == nullptr))) {
      throw std::invalid_argument("null argument");
    }
    std::unordered_map<std::string, std::string> kwargs;
    for (size_t i = 0; i < n_args; ++i) {
      if (keys[i] == nullptr || values[i] == nullptr) throw std::invalid_argument("null trainer argument");
      kwargs[keys[i]] = values[i];
    }
    ArraySentenceIterator iterator(sentences, sentence_lens, n_sentences);
    if (has_seed) sentencepiece::SetRandomGeneratorSeed(seed);
    auto status = sentencepiece::SentencePieceTrainer::Train(kwargs, &iterator);
    if (!status.ok()) {
      SetError(err, status.ToString());
      return 1;
    }
    return 0;
  });
}
