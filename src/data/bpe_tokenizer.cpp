// Byte-level BPE, matching HF `tokenizers` (the ground truth for the golden
// test in tests/data/bpe_tokenizer_test.cpp).
//
// Why these choices:
// - Added tokens are cut out of the raw text before pre-tokenization, as HF's
//   AddedVocabulary does; otherwise "<|im_end|>" would be split by the regex.
// - The regex runs in PCRE2 with PCRE2_MATCH_INVALID_UTF, so bytes that are
//   not valid UTF-8 never match and fall into the gaps, which are kept as
//   pieces: every input byte is encoded and Decode(Encode(s)) == s for any s.
// - Merging picks the lowest-ranked adjacent pair, leftmost on ties, one
//   merge at a time. This equals HF's priority-queue merge (and differs from
//   GPT-2's "merge every occurrence" only in rare overlap cases, where HF wins).
#include "dfar/data/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>

#include "dfar/core/error.h"
#include "dfar/weights/gguf.h"

namespace dfar {

const char* const kGpt2SplitPattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

// ---------------------------------------------------------------------------
// GPT-2's byte alphabet: each byte maps to a printable code point (printable
// Latin-1 bytes to themselves, the rest to U+0100 onwards, in byte order).
struct ByteAlphabet {
  std::array<std::string, 256> byte_to_utf8;
  std::array<int, 324> cp_to_byte;  // Code points 0..323; -1 where none.

  ByteAlphabet() {
    cp_to_byte.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      int cp = printable ? b : next++;
      cp_to_byte[cp] = b;
      byte_to_utf8[b] = cp < 0x80
                            ? std::string(1, static_cast<char>(cp))
                            : std::string{static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
    }
  }
};

const ByteAlphabet& Alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

// Decodes one UTF-8 sequence at s[i]; returns its length (1 for an invalid byte, with cp = -1).
size_t NextCodePoint(std::string_view s, size_t i, int* cp) {
  auto u = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = u(i);
  size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + len > s.size()) {
    *cp = -1;
    return 1;
  }
  int v = len == 1 ? c : c & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) {
    if ((u(i + k) & 0xC0) != 0x80) {
      *cp = -1;
      return 1;
    }
    v = (v << 6) | (u(i + k) & 0x3F);
  }
  *cp = v;
  return len;
}

// A token's text in the byte alphabet -> the bytes it stands for. Characters
// outside the alphabet are kept as their UTF-8 (no byte-level vocab has them).
std::string ByteLevelDecode(std::string_view token) {
  std::string out;
  for (size_t i = 0; i < token.size();) {
    int cp = -1;
    size_t len = NextCodePoint(token, i, &cp);
    int b = (cp >= 0 && cp < 324) ? Alphabet().cp_to_byte[cp] : -1;
    if (b >= 0) {
      out.push_back(static_cast<char>(b));
    } else {
      out.append(token.substr(i, len));
    }
    i += len;
  }
  return out;
}

// ---------------------------------------------------------------------------
// A compiled PCRE2 pattern; immutable, so shared by concurrent Encode calls.
class Regex {
 public:
  Regex(const std::string& pattern, const std::string& source) {
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_offset, nullptr);
    if (code_ == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      DFAR_THROW(source, ": bad pre-tokenizer regex at offset ", err_offset, ": ", reinterpret_cast<char*>(msg),
                 " (pattern: ", pattern, ")");
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // Optional speed-up; the interpreter is the fallback.
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the matches of the pattern in `text`, and the gaps between them, in order.
  void Split(std::string_view text, std::vector<std::string_view>* out) const;

 private:
  // Finds the next match at or after `start`; false when there is none.
  bool Match(std::string_view text, size_t start, pcre2_match_data* md, size_t* b, size_t* e) const;
  pcre2_code* code_ = nullptr;
};

bool Regex::Match(std::string_view text, size_t start, pcre2_match_data* md, size_t* b, size_t* e) const {
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  int rc = pcre2_match(code_, subject, text.size(), start, 0, md, nullptr);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
    rc = pcre2_match(code_, subject, text.size(), start, PCRE2_NO_JIT, md, nullptr);  // Heap-backed.
  }
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof(msg));
    DFAR_THROW("BPE pre-tokenizer: regex match failed at byte ", start, ": ", reinterpret_cast<char*>(msg));
  }
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  *b = ov[0];
  *e = ov[1];
  return true;
}

void Regex::Split(std::string_view text, std::vector<std::string_view>* out) const {
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
  if (md == nullptr) DFAR_THROW("BPE pre-tokenizer: out of memory for PCRE2 match data");
  size_t gap = 0, search = 0, b = 0, e = 0;
  while (search < text.size() && Match(text, search, md.get(), &b, &e)) {
    if (e == b) {  // Empty match: step over one character, keeping it in the gap.
      int cp = 0;
      search = b + NextCodePoint(text, b, &cp);
      continue;
    }
    if (b > gap) out->push_back(text.substr(gap, b - gap));
    out->push_back(text.substr(b, e - b));
    gap = search = e;
  }
  if (gap < text.size()) out->push_back(text.substr(gap));
}

struct MergeInfo {
  int32_t rank;
  int32_t merged;
};

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b);
}

// ---------------------------------------------------------------------------
class BpeTokenizer final : public Tokenizer {
 public:
  BpeTokenizer(BpeVocab vocab, const std::string& source);

  std::vector<int32_t> Encode(std::string_view text) const override;
  std::string Decode(const std::vector<int32_t>& ids) const override;
  std::string Piece(int32_t id) const override { return tokens_[CheckId(id)]; }
  int64_t vocab_size() const override { return static_cast<int64_t>(tokens_.size()); }
  int32_t bos_id() const override { return bos_id_; }
  bool add_bos() const override { return add_bos_ && bos_id_ >= 0; }
  int32_t eos_id() const override { return eos_id_; }
  int32_t pad_id() const override { return pad_id_ >= 0 ? pad_id_ : eos_id_; }
  std::string kind() const override { return "bpe"; }

 private:
  size_t CheckId(int32_t id) const;
  int32_t CheckedSpecialId(int32_t id, const char* what) const;
  void BuildMerges(const std::vector<std::pair<std::string, std::string>>& merges);
  void BuildAdded(const std::vector<int32_t>& added_ids);
  // Finds the leftmost-longest added token at or after `from`; npos if none.
  size_t FindAdded(std::string_view text, size_t from, int32_t* id, size_t* len) const;
  void EncodeOrdinary(std::string_view text, std::vector<int32_t>* out) const;
  void EncodePiece(std::string_view piece, std::vector<int32_t>* out) const;
  std::vector<int32_t> MergePiece(std::string_view piece) const;

  std::string source_;
  std::vector<std::string> tokens_;
  std::vector<std::string> decoded_;  // id -> bytes Decode emits.
  std::unordered_map<std::string, int32_t> token_to_id_;
  std::unordered_map<uint64_t, MergeInfo> merges_;
  std::array<int32_t, 256> byte_ids_{};                 // Byte -> id of its one-character token; -1 if absent.
  std::vector<std::pair<std::string, int32_t>> added_;  // Sorted by text, longest first within a first byte.
  std::array<std::vector<size_t>, 256> added_by_first_byte_;
  bool isolate_digits_;
  bool ignore_merges_;
  std::unique_ptr<Regex> digits_;
  std::unique_ptr<Regex> split_;
  int32_t bos_id_, eos_id_, pad_id_, unk_id_;
  bool add_bos_ = false;

  static constexpr size_t kCacheLimit = 1 << 16;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

BpeTokenizer::BpeTokenizer(BpeVocab vocab, const std::string& source)
    : source_(source),
      tokens_(std::move(vocab.tokens)),
      isolate_digits_(vocab.pre.isolate_digits),
      ignore_merges_(vocab.ignore_merges) {
  DFAR_CHECK(!tokens_.empty(), source_, ": BPE vocabulary is empty");
  DFAR_CHECK(tokens_.size() < static_cast<size_t>(std::numeric_limits<int32_t>::max()), source_,
             ": BPE vocabulary too large");
  DFAR_CHECK(!vocab.pre.pattern.empty(), source_, ": BPE pre-tokenizer has no split regex");
  bos_id_ = CheckedSpecialId(vocab.bos_id, "bos");
  add_bos_ = vocab.add_bos;
  eos_id_ = CheckedSpecialId(vocab.eos_id, "eos");
  pad_id_ = CheckedSpecialId(vocab.pad_id, "pad");
  unk_id_ = CheckedSpecialId(vocab.unk_id, "unk");
  for (size_t i = 0; i < tokens_.size(); ++i) token_to_id_.emplace(tokens_[i], static_cast<int32_t>(i));
  for (int b = 0; b < 256; ++b) {
    auto it = token_to_id_.find(Alphabet().byte_to_utf8[b]);
    byte_ids_[b] = it == token_to_id_.end() ? -1 : it->second;
  }
  BuildMerges(vocab.merges);
  BuildAdded(vocab.added_ids);
  if (isolate_digits_) digits_ = std::make_unique<Regex>(R"(\p{N})", source_);
  split_ = std::make_unique<Regex>(vocab.pre.pattern, source_);
}

int32_t BpeTokenizer::CheckedSpecialId(int32_t id, const char* what) const {
  if (id < -1 || id >= static_cast<int32_t>(tokens_.size())) {
    DFAR_THROW(source_, ": ", what, " token id ", id, " is outside the vocabulary of ", tokens_.size());
  }
  return id;
}

size_t BpeTokenizer::CheckId(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= tokens_.size()) {
    DFAR_THROW(source_, ": token id ", id, " is outside the vocabulary [0, ", tokens_.size(), ")");
  }
  return static_cast<size_t>(id);
}

void BpeTokenizer::BuildMerges(const std::vector<std::pair<std::string, std::string>>& merges) {
  // A merge whose parts or result are not in the vocab can never fire on a
  // valid word; it is skipped (HF rejects such files, llama.cpp ignores them).
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    auto a = token_to_id_.find(left);
    auto b = token_to_id_.find(right);
    auto m = token_to_id_.find(left + right);
    if (a == token_to_id_.end() || b == token_to_id_.end() || m == token_to_id_.end()) continue;
    merges_.emplace(PairKey(a->second, b->second), MergeInfo{static_cast<int32_t>(rank), m->second});
  }
}

void BpeTokenizer::BuildAdded(const std::vector<int32_t>& added_ids) {
  decoded_.resize(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) decoded_[i] = ByteLevelDecode(tokens_[i]);
  for (int32_t id : added_ids) {
    const std::string& text = tokens_[CheckId(id)];
    decoded_[id] = text;  // Added tokens are stored raw, not in the byte alphabet.
    if (!text.empty()) added_.emplace_back(text, id);
  }
  // Longest first, so that the first candidate that matches is the longest.
  std::sort(added_.begin(), added_.end(), [](const auto& x, const auto& y) {
    return x.first.size() != y.first.size() ? x.first.size() > y.first.size() : x.first < y.first;
  });
  added_.erase(
      std::unique(added_.begin(), added_.end(), [](const auto& x, const auto& y) { return x.first == y.first; }),
      added_.end());
  for (size_t i = 0; i < added_.size(); ++i) {
    added_by_first_byte_[static_cast<unsigned char>(added_[i].first[0])].push_back(i);
  }
}

size_t BpeTokenizer::FindAdded(std::string_view text, size_t from, int32_t* id, size_t* len) const {
  if (added_.empty()) return std::string_view::npos;
  for (size_t pos = from; pos < text.size(); ++pos) {
    for (size_t i : added_by_first_byte_[static_cast<unsigned char>(text[pos])]) {
      const std::string& t = added_[i].first;
      if (text.compare(pos, t.size(), t) == 0) {
        *id = added_[i].second;
        *len = t.size();
        return pos;
      }
    }
  }
  return std::string_view::npos;
}

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> out;
  size_t pos = 0;
  while (pos < text.size()) {
    int32_t id = -1;
    size_t len = 0;
    size_t found = FindAdded(text, pos, &id, &len);
    size_t end = found == std::string_view::npos ? text.size() : found;
    EncodeOrdinary(text.substr(pos, end - pos), &out);
    if (found == std::string_view::npos) break;
    out.push_back(id);
    pos = found + len;
  }
  return out;
}

void BpeTokenizer::EncodeOrdinary(std::string_view text, std::vector<int32_t>* out) const {
  if (text.empty()) return;
  std::vector<std::string_view> chunks;
  if (isolate_digits_) {
    digits_->Split(text, &chunks);
  } else {
    chunks.push_back(text);
  }
  std::vector<std::string_view> pieces;
  for (std::string_view chunk : chunks) split_->Split(chunk, &pieces);
  for (std::string_view piece : pieces) EncodePiece(piece, out);
}

void BpeTokenizer::EncodePiece(std::string_view piece, std::vector<int32_t>* out) const {
  std::string key(piece);
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids = MergePiece(piece);
  out->insert(out->end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= kCacheLimit) cache_.clear();  // Bounded memory on long, diverse inputs.
  cache_.emplace(std::move(key), std::move(ids));
}

std::vector<int32_t> BpeTokenizer::MergePiece(std::string_view piece) const {
  std::vector<int32_t> sym;
  sym.reserve(piece.size());
  if (ignore_merges_) {
    std::string whole;
    for (char c : piece) whole += Alphabet().byte_to_utf8[static_cast<unsigned char>(c)];
    auto it = token_to_id_.find(whole);
    if (it != token_to_id_.end()) return {it->second};
  }
  for (char c : piece) {
    int32_t id = byte_ids_[static_cast<unsigned char>(c)];
    if (id >= 0 || unk_id_ >= 0) sym.push_back(id >= 0 ? id : unk_id_);  // No unk: the byte is dropped, as in HF.
  }
  while (sym.size() > 1) {
    size_t best = 0;
    const MergeInfo* best_merge = nullptr;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      auto it = merges_.find(PairKey(sym[i], sym[i + 1]));
      if (it != merges_.end() && (best_merge == nullptr || it->second.rank < best_merge->rank)) {
        best = i;
        best_merge = &it->second;
      }
    }
    if (best_merge == nullptr) break;
    sym[best] = best_merge->merged;
    sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
  return sym;
}

std::string BpeTokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += decoded_[CheckId(id)];
  return out;
}

// ---------------------------------------------------------------------------
// HF tokenizer.json.

using nlohmann::json;

json ReadJsonFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) DFAR_THROW(path, ": cannot open tokenizer file");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    DFAR_THROW(path, ": not valid JSON: ", e.what());
  }
}

// Reads one element of a pre_tokenizer Sequence (or the whole pre_tokenizer).
void ReadPreTokenizerStep(const json& step, const std::string& path, BpePreTokenizer* pre) {
  const std::string type = step.value("type", "");
  if (type == "Digits") {
    DFAR_CHECK(step.value("individual_digits", false), path, ": pre_tokenizer Digits without individual_digits");
    DFAR_CHECK(pre->pattern.empty(), path, ": pre_tokenizer Digits after the split regex is unsupported");
    pre->isolate_digits = true;
  } else if (type == "Split") {
    DFAR_CHECK(step.contains("pattern") && step["pattern"].contains("Regex"), path,
               ": pre_tokenizer Split needs a {\"Regex\": ...} pattern");
    DFAR_CHECK(step.value("behavior", "") == "Isolated" && !step.value("invert", false), path,
               ": pre_tokenizer Split supports only behavior Isolated, invert false");
    DFAR_CHECK(pre->pattern.empty(), path, ": pre_tokenizer has two split regexes");
    pre->pattern = step["pattern"]["Regex"].get<std::string>();
  } else if (type == "ByteLevel") {
    DFAR_CHECK(!step.value("add_prefix_space", false), path, ": ByteLevel add_prefix_space=true is unsupported");
    if (step.value("use_regex", true)) {
      DFAR_CHECK(pre->pattern.empty(), path, ": pre_tokenizer has two split regexes");
      pre->pattern = kGpt2SplitPattern;
    }
  } else {
    DFAR_THROW(path, ": unsupported pre_tokenizer type '", type, "'");
  }
}

BpePreTokenizer ReadPreTokenizer(const json& j, const std::string& path) {
  BpePreTokenizer pre;
  DFAR_CHECK(j.contains("pre_tokenizer") && j["pre_tokenizer"].is_object(), path, ": no pre_tokenizer");
  const json& p = j["pre_tokenizer"];
  if (p.value("type", "") == "Sequence") {
    for (const json& step : p.at("pretokenizers")) ReadPreTokenizerStep(step, path, &pre);
  } else {
    ReadPreTokenizerStep(p, path, &pre);
  }
  DFAR_CHECK(!pre.pattern.empty(), path, ": pre_tokenizer has no split regex (ByteLevel or Split)");
  return pre;
}

// Vocab entries and added tokens into tokens[id]; ids must be dense enough
// that max id < 2 * entries + 256 (a forged id cannot force a huge allocation).
void ReadTokens(const json& j, const std::string& path, BpeVocab* v) {
  const json& vocab = j.at("model").at("vocab");
  const json& added = j.contains("added_tokens") ? j["added_tokens"] : json::array();
  DFAR_CHECK(vocab.is_object() && added.is_array(), path, ": model.vocab must be an object, added_tokens an array");
  const int64_t limit = 2 * static_cast<int64_t>(vocab.size() + added.size()) + 256;
  auto place = [&](const std::string& text, int64_t id) {
    DFAR_CHECK(id >= 0 && id < limit, path, ": token '", text, "' has id ", id, " outside [0, ", limit, ")");
    if (static_cast<size_t>(id) >= v->tokens.size()) v->tokens.resize(id + 1);
    v->tokens[id] = text;
  };
  for (auto it = vocab.begin(); it != vocab.end(); ++it) place(it.key(), it.value().get<int64_t>());
  for (const json& a : added) {
    place(a.at("content").get<std::string>(), a.at("id").get<int64_t>());
    v->added_ids.push_back(a.at("id").get<int32_t>());
  }
}

void ReadMerges(const json& model, const std::string& path, BpeVocab* v) {
  const json& merges = model.contains("merges") ? model["merges"] : json::array();
  for (const json& m : merges) {
    if (m.is_array() && m.size() == 2) {
      v->merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      continue;
    }
    DFAR_CHECK(m.is_string(), path, ": merge must be \"a b\" or [\"a\", \"b\"]");
    const std::string s = m.get<std::string>();
    size_t sp = s.find(' ', 1);
    DFAR_CHECK(sp != std::string::npos, path, ": merge '", s, "' has no space");
    v->merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
  }
}

int32_t IdOfConfigToken(const json& config, const char* key, const BpeVocab& v) {
  if (!config.contains(key) || config[key].is_null()) return -1;
  const json& t = config[key];
  const std::string text = t.is_object() ? t.value("content", "") : t.get<std::string>();
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (v.tokens[i] == text) return static_cast<int32_t>(i);
  }
  return -1;
}

// bos/eos/pad live in tokenizer_config.json beside tokenizer.json.
void ReadSpecialIds(const std::string& path, BpeVocab* v) {
  size_t slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  std::string config_path = dir + "/tokenizer_config.json";
  if (!std::ifstream(config_path)) return;
  json config = ReadJsonFile(config_path);
  v->bos_id = IdOfConfigToken(config, "bos_token", *v);
  v->eos_id = IdOfConfigToken(config, "eos_token", *v);
  v->pad_id = IdOfConfigToken(config, "pad_token", *v);
  v->add_bos = config.value("add_bos_token", false);
}

void CheckHfModel(const json& j, const std::string& path) {
  DFAR_CHECK(j.is_object() && j.contains("model"), path, ": no \"model\" section: not a HF tokenizer.json");
  const json& model = j["model"];
  DFAR_CHECK(model.value("type", "BPE") == "BPE", path, ": model type '", model.value("type", ""),
             "' is not BPE (use the SentencePiece tokenizer)");
  DFAR_CHECK(!j.contains("normalizer") || j["normalizer"].is_null(), path,
             ": tokenizer normalizers are unsupported by the byte-level BPE tokenizer");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    DFAR_CHECK(!model.contains(key) || model[key].is_null() || model[key] == "", path, ": model.", key,
               " is unsupported");
  }
}

}  // namespace

std::unique_ptr<Tokenizer> MakeBpeTokenizer(BpeVocab vocab, const std::string& source) {
  return std::make_unique<BpeTokenizer>(std::move(vocab), source);
}

std::unique_ptr<Tokenizer> LoadBpeTokenizerFromHfJson(const std::string& path) {
  json j = ReadJsonFile(path);
  BpeVocab v;
  try {
    CheckHfModel(j, path);
    const json& model = j["model"];
    ReadTokens(j, path, &v);
    ReadMerges(model, path, &v);
    v.pre = ReadPreTokenizer(j, path);
    v.ignore_merges = model.value("ignore_merges", false);
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      v.unk_id = IdOfConfigToken(model, "unk_token", v);
    }
  } catch (const json::exception& e) {
    DFAR_THROW(path, ": malformed tokenizer.json: ", e.what());
  }
  ReadSpecialIds(path, &v);
  return MakeBpeTokenizer(std::move(v), path);
}

// ---------------------------------------------------------------------------
// GGUF.

BpePreTokenizer BpePreTokenizerForGgufPre(const std::string& pre) {
  // Names and their splits follow llama.cpp (llama-vocab.cpp).
  static const std::vector<std::string> kGpt2 = {"default", "gpt2", "gpt-2", "phi-2", "olmo"};
  static const std::vector<std::string> kDigitsGpt2 = {"smollm", "starcoder", "refact", "codeshell"};
  static const std::vector<std::string> kLlama3 = {"llama3",  "llama-v3", "llama-bpe", "falcon3",
                                                   "pixtral", "dbrx",     "smaug-bpe"};
  static const std::vector<std::string> kQwen2 = {"qwen2", "deepseek-r1-qwen"};
  auto in = [&](const std::vector<std::string>& names) {
    return std::find(names.begin(), names.end(), pre) != names.end();
  };
  if (in(kGpt2)) return {false, kGpt2SplitPattern};
  if (in(kDigitsGpt2)) return {true, kGpt2SplitPattern};
  if (in(kLlama3)) return {false, kLlama3SplitPattern};
  if (in(kQwen2)) return {false, kQwen2SplitPattern};
  DFAR_THROW("unknown BPE pre-tokenizer '", pre, "' (known: gpt2, smollm, starcoder, llama-bpe, qwen2, ...)");
}

namespace {

std::vector<std::pair<std::string, std::string>> SplitGgufMerges(const std::vector<std::string>& merges,
                                                                 const std::string& path) {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (const std::string& m : merges) {
    size_t sp = m.find(' ', 1);
    DFAR_CHECK(sp != std::string::npos, path, ": tokenizer.ggml.merges entry '", m, "' has no space");
    out.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  return out;
}

int32_t GgufTokenId(const GgufFile& g, const std::string& key) {
  if (!g.Has(key)) return -1;
  uint32_t id = g.GetU32(key);
  return id > static_cast<uint32_t>(std::numeric_limits<int32_t>::max()) ? -1 : static_cast<int32_t>(id);
}

}  // namespace

BpeVocab ReadGgufVocab(const GgufFile& g) {
  const std::string& path = g.path();
  const std::string model = g.GetString("tokenizer.ggml.model");
  DFAR_CHECK(model == "gpt2", path, ": tokenizer.ggml.model is '", model, "', not 'gpt2' (byte-level BPE)");
  BpeVocab v;
  v.tokens = g.GetStringArray("tokenizer.ggml.tokens");
  v.merges = SplitGgufMerges(g.GetStringArray("tokenizer.ggml.merges"), path);
  const std::string pre = g.GetString("tokenizer.ggml.pre", "default");
  try {
    v.pre = BpePreTokenizerForGgufPre(pre);
  } catch (const Error& e) {
    DFAR_THROW(path, ": tokenizer.ggml.pre: ", e.message());
  }
  v.ignore_merges = pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe";
  if (g.Has("tokenizer.ggml.token_type")) {
    std::vector<int32_t> types = g.GetI32Array("tokenizer.ggml.token_type");
    DFAR_CHECK(types.size() == v.tokens.size(), path, ": tokenizer.ggml.token_type has ", types.size(), " entries for ",
               v.tokens.size(), " tokens");
    for (size_t i = 0; i < types.size(); ++i) {
      if (types[i] == 3 || types[i] == 4) v.added_ids.push_back(static_cast<int32_t>(i));  // Control, user-defined.
    }
  }
  v.bos_id = GgufTokenId(g, "tokenizer.ggml.bos_token_id");
  v.eos_id = GgufTokenId(g, "tokenizer.ggml.eos_token_id");
  v.pad_id = GgufTokenId(g, "tokenizer.ggml.padding_token_id");
  v.add_bos = g.GetBool("tokenizer.ggml.add_bos_token", false);
  // tokenizer.ggml.unknown_token_id is not used: llama.cpp drops a byte that
  // has no token (SmolLM2 lacks e.g. 0x04 and 0xFF), and so does HF's BPE
  // without an unk token; emitting <|endoftext|> there would be worse.
  return v;
}

std::unique_ptr<Tokenizer> LoadBpeTokenizerFromGguf(const GgufFile& g) {
  return MakeBpeTokenizer(ReadGgufVocab(g), g.path());
}

}  // namespace dfar
