// SentencePiece tokenizer, reached through libdfar_spm.so (spm_shim.h).
//
// dfar never links libsentencepiece: Debian's copy exports an embedded
// protobuf-lite 3.14 that clashes with the libprotobuf 3.21 libtorch needs.
// The shim is dlopen()ed on first use with RTLD_LOCAL | RTLD_DEEPBIND, so
// SentencePiece binds to its own protobuf and stays invisible to the rest of
// the process. Where the shim is looked for: $DFAR_SPM_SHIM if set (only
// there); else <dir of the executable>/../lib/libdfar_spm.so, then the path
// the build wrote it to (DFAR_SPM_SHIM_PATH).
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "dfar/core/error.h"
#include "dfar/data/spm_shim.h"
#include "dfar/data/tokenizer.h"

#ifndef DFAR_SPM_SHIM_PATH
#define DFAR_SPM_SHIM_PATH ""
#endif

// The sanitizer runtimes refuse RTLD_DEEPBIND (it would bypass their
// interceptors). Without it SentencePiece binds to an already loaded
// libprotobuf, so under ASan the tokenizer works only in binaries without
// libtorch (dfar_tests).
#if defined(__SANITIZE_ADDRESS__)
#define DFAR_SPM_NO_DEEPBIND 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define DFAR_SPM_NO_DEEPBIND 1
#endif
#endif

namespace dfar {
namespace {

// The shim's entry points, resolved once.
struct SpmApi {
  decltype(&dfar_spm_abi_version) abi_version = nullptr;
  decltype(&dfar_spm_free_buffer) free_buffer = nullptr;
  decltype(&dfar_spm_load) load = nullptr;
  decltype(&dfar_spm_free) free = nullptr;
  decltype(&dfar_spm_encode) encode = nullptr;
  decltype(&dfar_spm_decode) decode = nullptr;
  decltype(&dfar_spm_id_to_piece) id_to_piece = nullptr;
  decltype(&dfar_spm_piece_to_id) piece_to_id = nullptr;
  decltype(&dfar_spm_vocab_size) vocab_size = nullptr;
  decltype(&dfar_spm_bos_id) bos_id = nullptr;
  decltype(&dfar_spm_eos_id) eos_id = nullptr;
  decltype(&dfar_spm_pad_id) pad_id = nullptr;
  decltype(&dfar_spm_unk_id) unk_id = nullptr;
  decltype(&dfar_spm_train) train = nullptr;
};

std::vector<std::string> ShimCandidates() {
  if (const char* env = std::getenv("DFAR_SPM_SHIM"); env != nullptr && *env != '\0') return {env};
  std::vector<std::string> paths;
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) paths.push_back((exe.parent_path() / ".." / "lib" / "libdfar_spm.so").lexically_normal().string());
  std::string built = DFAR_SPM_SHIM_PATH;
  if (!built.empty() && std::find(paths.begin(), paths.end(), built) == paths.end()) paths.push_back(built);
  return paths;
}

SpmApi LoadApi() {
  int flags = RTLD_NOW | RTLD_LOCAL;
#ifndef DFAR_SPM_NO_DEEPBIND
  flags |= RTLD_DEEPBIND;
#endif
  void* handle = nullptr;
  std::string path, tried;
  for (const std::string& candidate : ShimCandidates()) {
    handle = dlopen(candidate.c_str(), flags);
    if (handle != nullptr) {
      path = candidate;
      break;
    }
    const char* err = dlerror();
    const std::string why = err != nullptr ? err : "unknown dlopen error";
    // dlerror() usually names the file already.
    tried += "\n  " + (why.rfind(candidate, 0) == 0 ? why : candidate + ": " + why);
  }
  DFAR_CHECK(handle != nullptr, "cannot load the SentencePiece shim libdfar_spm.so (set DFAR_SPM_SHIM to its path); ",
             "tried:", tried.empty() ? std::string("\n  (no candidate paths)") : tried);
  // The handle stays open for the life of the process.
  auto sym = [&](auto& fn, const char* name) {
    dlerror();
    void* p = dlsym(handle, name);
    const char* why = dlerror();
    DFAR_CHECK(p != nullptr && why == nullptr, "SentencePiece shim '", path, "' lacks ", name, ": ",
               why != nullptr ? why : "null symbol");
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
  };
  SpmApi api;
  sym(api.abi_version, "dfar_spm_abi_version");
  DFAR_CHECK(api.abi_version() == DFAR_SPM_ABI_VERSION, "SentencePiece shim '", path, "' has ABI version ",
             api.abi_version(), ", dfar expects ", DFAR_SPM_ABI_VERSION, " (stale build?)");
  sym(api.free_buffer, "dfar_spm_free_buffer");
  sym(api.load, "dfar_spm_load");
  sym(api.free, "dfar_spm_free");
  sym(api.encode, "dfar_spm_encode");
  sym(api.decode, "dfar_spm_decode");
  sym(api.id_to_piece, "dfar_spm_id_to_piece");
  sym(api.piece_to_id, "dfar_spm_piece_to_id");
  sym(api.vocab_size, "dfar_spm_vocab_size");
  sym(api.bos_id, "dfar_spm_bos_id");
  sym(api.eos_id, "dfar_spm_eos_id");
  sym(api.pad_id, "dfar_spm_pad_id");
  sym(api.unk_id, "dfar_spm_unk_id");
  sym(api.train, "dfar_spm_train");
  return api;
}

// Thread-safe (magic static); a failed load throws and is retried next call.
const SpmApi& Api() {
  static const SpmApi api = LoadApi();
  return api;
}

// Owns one buffer the shim handed out.
template <typename T>
struct ShimBuffer {
  T* p = nullptr;
  ShimBuffer() = default;
  ShimBuffer(const ShimBuffer&) = delete;
  ShimBuffer& operator=(const ShimBuffer&) = delete;
  // Only ever non-null after Api() has loaded, so this cannot throw.
  ~ShimBuffer() {
    if (p != nullptr) Api().free_buffer(p);
  }
};

// The shim's error text (status.ToString() for SentencePiece failures).
std::string ErrorText(const ShimBuffer<char>& err) {
  return err.p != nullptr ? err.p : "unknown error";
}

struct ModelDeleter {
  void operator()(dfar_spm_model* m) const { Api().free(m); }
};

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    DFAR_CHECK(std::filesystem::is_regular_file(path), "SentencePiece model '", path, "' does not exist");
    const SpmApi& api = Api();
    dfar_spm_model* model = nullptr;
    ShimBuffer<char> err;
    int rc = api.load(path.c_str(), &model, &err.p);
    DFAR_CHECK(rc == 0 && model != nullptr, "cannot load SentencePiece model '", path, "': ", ErrorText(err));
    model_.reset(model);
    vocab_size_ = api.vocab_size(model);
    bos_id_ = api.bos_id(model);
    eos_id_ = api.eos_id(model);
    pad_id_ = api.pad_id(model);
  }

  std::vector<int32_t> Encode(std::string_view text) const override {
    ShimBuffer<int32_t> ids;
    size_t n = 0;
    ShimBuffer<char> err;
    int rc = Api().encode(model_.get(), text.data(), text.size(), &ids.p, &n, &err.p);
    DFAR_CHECK(rc == 0, "SentencePiece encode failed (", path_, "): ", ErrorText(err));
    return std::vector<int32_t>(ids.p, ids.p + n);
  }

  std::string Decode(const std::vector<int32_t>& ids) const override {
    for (int32_t id : ids) CheckId(id);
    ShimBuffer<char> text;
    size_t len = 0;
    ShimBuffer<char> err;
    int rc = Api().decode(model_.get(), ids.data(), ids.size(), &text.p, &len, &err.p);
    DFAR_CHECK(rc == 0, "SentencePiece decode failed (", path_, "): ", ErrorText(err));
    return std::string(text.p, len);
  }

  std::string Piece(int32_t id) const override {
    CheckId(id);
    ShimBuffer<char> piece;
    size_t len = 0;
    ShimBuffer<char> err;
    int rc = Api().id_to_piece(model_.get(), id, &piece.p, &len, &err.p);
    DFAR_CHECK(rc == 0, "SentencePiece piece lookup failed (", path_, "): ", ErrorText(err));
    return std::string(piece.p, len);
  }

  int64_t vocab_size() const override { return vocab_size_; }
  int32_t bos_id() const override { return bos_id_; }
  // SentencePiece Llama-family models prepend BOS whenever they define one,
  // as HF's LlamaTokenizer does by default (add_bos_token=True).
  bool add_bos() const override { return bos_id_ != -1; }
  int32_t eos_id() const override { return eos_id_; }
  // Llama-2 ships no pad piece; padding is masked out anyway, so any valid id will do.
  int32_t pad_id() const override { return pad_id_ >= 0 ? pad_id_ : eos_id_; }
  std::string kind() const override { return "sentencepiece"; }

 private:
  // SentencePiece asserts on ids outside the vocabulary; we owe users a message.
  void CheckId(int32_t id) const {
    DFAR_CHECK(id >= 0 && id < vocab_size_, "token id ", id, " is outside the vocabulary [0, ", vocab_size_, ") of ",
               path_);
  }

  std::string path_;
  std::unique_ptr<dfar_spm_model, ModelDeleter> model_;
  // Immutable once loaded; cached so the hot paths skip the shim.
  int32_t vocab_size_ = 0;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t pad_id_ = -1;
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
  // The shim skips empty sentences, as the trainer's iterator always did.
  DFAR_CHECK(std::any_of(texts.begin(), texts.end(), [](const std::string& t) { return !t.empty(); }),
             "cannot train a tokenizer on no text");
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  DFAR_CHECK(!ec, "cannot create tokenizer directory '", out_dir, "': ", ec.message());
  const std::string prefix = (std::filesystem::path(out_dir) / "tokenizer").string();
  // Global to SentencePiece; unigram training draws from it only when sampling
  // sentences. All-ones is reserved there for "seed from std::random_device".
  unsigned int spm_seed = static_cast<unsigned int>(seed ^ (seed >> 32));
  spm_seed = spm_seed == ~0u ? 0u : spm_seed;

  std::vector<const char*> sentences;
  std::vector<size_t> lens;
  sentences.reserve(texts.size());
  lens.reserve(texts.size());
  for (const std::string& t : texts) {
    sentences.push_back(t.data());
    lens.push_back(t.size());
  }
  const auto args = TrainerArgs(vocab_size, prefix, texts.size());
  std::vector<const char*> keys, values;
  for (const auto& [key, value] : args) {
    keys.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  const SpmApi& api = Api();
  ShimBuffer<char> err;
  int rc = api.train(sentences.data(), lens.data(), sentences.size(), keys.data(), values.data(), keys.size(),
                     /*has_seed=*/1, spm_seed, &err.p);
  DFAR_CHECK(rc == 0, "SentencePiece training failed: ", ErrorText(err));
  return prefix + ".model";
}

}  // namespace dfar
