// Tests for the byte-level BPE tokenizer: toy vocabularies pin down each
// rule (byte alphabet, merge order, added tokens, the split regexes); the
// real SmolLM2 tokenizer (from the cached GGUF) must reproduce HF `tokenizers`
// ids for every string in tests/fixtures/tokenizer/smollm2_golden.json, made
// by tools/make_tokenizer_golden.py.
#include "dfar/data/bpe_tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "dfar/core/error.h"
#include "dfar/weights/gguf.h"
#include "helpers/test_util.h"

namespace dfar {
namespace {

using testing::ErrorOf;

using nlohmann::json;

// GPT-2's byte -> code point table, written out independently of the code under test.
std::string ByteChar(int b) {
  static std::vector<int> cp = [] {
    std::vector<int> m(256);
    int next = 256;
    for (int i = 0; i < 256; ++i) {
      bool printable = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174 && i <= 255);
      m[i] = printable ? i : next++;
    }
    return m;
  }();
  int c = cp[b];
  if (c < 0x80) return std::string(1, static_cast<char>(c));
  return {static_cast<char>(0xC0 | (c >> 6)), static_cast<char>(0x80 | (c & 0x3F))};
}

std::string ToAlphabet(const std::string& s) {
  std::string out;
  for (unsigned char c : s) out += ByteChar(c);
  return out;
}

// A toy vocabulary: ids 0..255 are the bytes; `extra` tokens (raw text,
// mapped into the alphabet) and `added` tokens (kept raw) follow, in order.
BpeVocab ToyVocab(const std::vector<std::string>& extra, const std::vector<std::pair<std::string, std::string>>& merges,
                  const std::vector<std::string>& added, BpePreTokenizer pre) {
  BpeVocab v;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(ByteChar(b));
  for (const std::string& e : extra) v.tokens.push_back(ToAlphabet(e));
  for (const auto& [l, r] : merges) v.merges.emplace_back(ToAlphabet(l), ToAlphabet(r));
  for (const std::string& a : added) {
    v.added_ids.push_back(static_cast<int32_t>(v.tokens.size()));
    v.tokens.push_back(a);
  }
  v.pre = pre;
  return v;
}

int32_t Id(const Tokenizer& t, const std::string& raw) {
  for (int32_t i = 0; i < t.vocab_size(); ++i) {
    if (t.Piece(i) == ToAlphabet(raw)) return i;
  }
  ADD_FAILURE() << "no token for '" << raw << "'";
  return -1;
}

// A fresh directory under $TMPDIR, removed with everything in it at scope exit.
class TempDir {
 public:
  explicit TempDir(const std::string& name) {
    const char* tmp = std::getenv("TMPDIR");
    path_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/dfar_bpe_" + std::to_string(::getpid()) + "_" + name;
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---------------------------------------------------------------------------
// Toy vocabularies.

TEST(BpeToy, BytesWithoutMergesAndRoundTrip) {
  auto t = MakeBpeTokenizer(ToyVocab({}, {}, {}, {false, kGpt2SplitPattern}), "toy");
  EXPECT_EQ(t->kind(), "bpe");
  EXPECT_EQ(t->vocab_size(), 256);
  EXPECT_EQ(t->Encode("a b"), (std::vector<int32_t>{'a', ' ', 'b'}));
  EXPECT_EQ(t->Piece(' '), "\xC4\xA0");   // "Ġ"
  EXPECT_EQ(t->Piece('\n'), "\xC4\x8A");  // "Ċ"
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(t->Decode(t->Encode(all)), all);  // Every byte, invalid UTF-8 included.
  EXPECT_TRUE(t->Encode("").empty());
  EXPECT_EQ(t->bos_id(), -1);
  EXPECT_EQ(t->pad_id(), -1);
}

TEST(BpeToy, MergesApplyByRankLeftmostFirst) {
  // "aaa": merge (a,a) rank 0 at the leftmost pair gives "aa a"; then (aa,a) gives "aaa".
  auto t = MakeBpeTokenizer(
      ToyVocab({"aa", "aaa", "ab"}, {{"a", "a"}, {"aa", "a"}, {"a", "b"}}, {}, {false, kGpt2SplitPattern}), "toy");
  EXPECT_EQ(t->Encode("aaa"), (std::vector<int32_t>{Id(*t, "aaa")}));
  EXPECT_EQ(t->Encode("aab"), (std::vector<int32_t>{Id(*t, "aa"), 'b'}));  // (a,a) outranks (a,b).
  // "aaaa": after "aa a a", (a,a) rank 0 still beats (aa,a) rank 1.
  EXPECT_EQ(t->Encode("aaaa"), (std::vector<int32_t>{Id(*t, "aa"), Id(*t, "aa")}));
  EXPECT_EQ(t->Decode(t->Encode("aaaab aab")), "aaaab aab");
}

TEST(BpeToy, AddedTokensMatchWholeLeftmostLongest) {
  auto t = MakeBpeTokenizer(ToyVocab({}, {}, {"<x>", "<x>y", "<|im_end|>"}, {false, kGpt2SplitPattern}), "toy");
  const int32_t x = 256, xy = 257, end = 258;
  EXPECT_EQ(t->Encode("a<|im_end|>b"), (std::vector<int32_t>{'a', end, 'b'}));
  EXPECT_EQ(t->Encode("<x>yz<x>"), (std::vector<int32_t>{xy, 'z', x}));
  EXPECT_EQ(t->Encode("<|im_end|><|im_end|>"), (std::vector<int32_t>{end, end}));
  EXPECT_EQ(t->Encode("<|im_end"), (std::vector<int32_t>{'<', '|', 'i', 'm', '_', 'e', 'n', 'd'}));
  EXPECT_EQ(t->Decode({'a', end, xy}), "a<|im_end|><x>y");
  EXPECT_EQ(t->Piece(end), "<|im_end|>");
}

// The same text splits differently under each pre-tokenizer; merges that would
// cross a split show it.
TEST(BpeToy, PreTokenizersSplitAsTheirModels) {
  std::vector<std::string> extra = {"34", " 1", "12"};
  std::vector<std::pair<std::string, std::string>> merges = {{"3", "4"}, {" ", "1"}, {"1", "2"}};
  auto gpt2 = MakeBpeTokenizer(ToyVocab(extra, merges, {}, {false, kGpt2SplitPattern}), "gpt2");
  auto smol = MakeBpeTokenizer(ToyVocab(extra, merges, {}, BpePreTokenizerForGgufPre("smollm")), "smollm");
  auto llama3 = MakeBpeTokenizer(ToyVocab(extra, merges, {}, BpePreTokenizerForGgufPre("llama-bpe")), "llama3");
  auto qwen2 = MakeBpeTokenizer(ToyVocab(extra, merges, {}, BpePreTokenizerForGgufPre("qwen2")), "qwen2");
  const int32_t k34 = 256, k_1 = 257, k12 = 258;
  EXPECT_EQ(gpt2->Encode("1234"), (std::vector<int32_t>{k12, k34}));            // One piece.
  EXPECT_EQ(smol->Encode("1234"), (std::vector<int32_t>{'1', '2', '3', '4'}));  // Every digit alone.
  EXPECT_EQ(llama3->Encode("1234"), (std::vector<int32_t>{k12, '3', '4'}));     // "123" "4".
  EXPECT_EQ(qwen2->Encode("1234"), (std::vector<int32_t>{'1', '2', '3', '4'}));
  EXPECT_EQ(gpt2->Encode("a 1"), (std::vector<int32_t>{'a', k_1}));
  EXPECT_EQ(smol->Encode("a 1"), (std::vector<int32_t>{'a', ' ', '1'}));
  EXPECT_EQ(llama3->Encode("a 1"), (std::vector<int32_t>{'a', ' ', '1'}));
  EXPECT_EQ(smol->Encode("x 34"), (std::vector<int32_t>{'x', ' ', '3', '4'}));
  EXPECT_NE(ErrorOf([] { BpePreTokenizerForGgufPre("nope"); }).find("unknown BPE pre-tokenizer 'nope'"),
            std::string::npos);
}

TEST(BpeToy, SpecialIdsAndErrors) {
  BpeVocab v = ToyVocab({}, {}, {"<s>", "</s>"}, {false, kGpt2SplitPattern});
  v.bos_id = 256;
  v.eos_id = 257;
  auto t = MakeBpeTokenizer(v, "toy");
  EXPECT_EQ(t->bos_id(), 256);
  EXPECT_EQ(t->eos_id(), 257);
  EXPECT_EQ(t->pad_id(), 257);  // Falls back to eos.
  EXPECT_NE(ErrorOf([&] { t->Decode({0, 999}); }).find("toy: token id 999 is outside"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { t->Piece(-1); }).find("token id -1"), std::string::npos);
  v.eos_id = 5000;
  EXPECT_NE(ErrorOf([&] { MakeBpeTokenizer(v, "toy"); }).find("eos token id 5000"), std::string::npos);
  BpeVocab bad = ToyVocab({}, {}, {}, {false, "(unclosed"});
  EXPECT_NE(ErrorOf([&] { MakeBpeTokenizer(bad, "toy"); }).find("toy: bad pre-tokenizer regex"), std::string::npos);
}

// ---------------------------------------------------------------------------
// HF tokenizer.json.

json ToyHfJson(const json& pre_tokenizer) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteChar(b)] = b;
  vocab[ToAlphabet(" 1")] = 256;
  vocab[ToAlphabet("hi")] = 257;
  json j;
  j["model"] = {
      {"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({ToAlphabet(" ") + " 1", json::array({"h", "i"})})}};
  j["added_tokens"] = json::array({{{"id", 258}, {"content", "<|im_start|>"}, {"special", true}},
                                   {{"id", 259}, {"content", "<|im_end|>"}, {"special", true}}});
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = pre_tokenizer;
  return j;
}

std::string WriteHf(const std::string& dir, const json& tokenizer, const json* config) {
  std::ofstream(dir + "/tokenizer.json") << tokenizer.dump();
  if (config != nullptr) std::ofstream(dir + "/tokenizer_config.json") << config->dump();
  return dir + "/tokenizer.json";
}

TEST(BpeHfJson, LoadsSequencePreTokenizerAndConfig) {
  json pre = {
      {"type", "Sequence"},
      {"pretokenizers", json::array({{{"type", "Digits"}, {"individual_digits", true}},
                                     {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}})}};
  json config = {{"bos_token", "<|im_start|>"}, {"eos_token", {{"content", "<|im_end|>"}}}, {"pad_token", nullptr}};
  TempDir dir("seq");
  std::string path = WriteHf(dir.path(), ToyHfJson(pre), &config);
  auto t = LoadBpeTokenizerFromHfJson(path);
  EXPECT_EQ(t->vocab_size(), 260);
  EXPECT_EQ(t->bos_id(), 258);
  EXPECT_EQ(t->eos_id(), 259);
  EXPECT_EQ(t->pad_id(), 259);
  EXPECT_EQ(t->Encode("<|im_start|>hi 1<|im_end|>"), (std::vector<int32_t>{258, 257, ' ', '1', 259}));
  EXPECT_EQ(t->Decode({258, 257, 256}), "<|im_start|>hi 1");
}

TEST(BpeHfJson, LoadsSplitRegexPreTokenizer) {
  json pre = {{"type", "Sequence"},
              {"pretokenizers", json::array({{{"type", "Split"},
                                              {"pattern", {{"Regex", kGpt2SplitPattern}}},
                                              {"behavior", "Isolated"},
                                              {"invert", false}},
                                             {{"type", "ByteLevel"}, {"use_regex", false}}})}};
  TempDir dir("split");
  auto t = LoadBpeTokenizerFromHfJson(WriteHf(dir.path(), ToyHfJson(pre), nullptr));
  EXPECT_EQ(t->Encode("hi 1"), (std::vector<int32_t>{257, 256}));
  EXPECT_EQ(t->bos_id(), -1);
}

TEST(BpeHfJson, ErrorsNameTheFile) {
  EXPECT_NE(ErrorOf([] {
              LoadBpeTokenizerFromHfJson("/nonexistent/tokenizer.json");
            }).find("/nonexistent/tokenizer.json: cannot open"),
            std::string::npos);
  TempDir tmp("bad");
  const std::string& dir = tmp.path();
  std::ofstream(dir + "/tokenizer.json") << "{not json";
  EXPECT_NE(ErrorOf([&] { LoadBpeTokenizerFromHfJson(dir + "/tokenizer.json"); }).find("not valid JSON"),
            std::string::npos);
  json wp = ToyHfJson({{"type", "ByteLevel"}});
  wp["model"]["type"] = "WordPiece";
  EXPECT_NE(ErrorOf([&] { LoadBpeTokenizerFromHfJson(WriteHf(dir, wp, nullptr)); }).find("is not BPE"),
            std::string::npos);
  json ws = ToyHfJson({{"type", "Whitespace"}});
  EXPECT_NE(ErrorOf([&] {
              LoadBpeTokenizerFromHfJson(WriteHf(dir, ws, nullptr));
            }).find("unsupported pre_tokenizer type 'Whitespace'"),
            std::string::npos);
  json far = ToyHfJson({{"type", "ByteLevel"}});
  far["model"]["vocab"]["zz"] = 1 << 30;
  EXPECT_NE(ErrorOf([&] { LoadBpeTokenizerFromHfJson(WriteHf(dir, far, nullptr)); }).find("has id 1073741824"),
            std::string::npos);
}

// ---------------------------------------------------------------------------
// GGUF-carried tokenizers.

struct Buf {
  std::string bytes;
  template <typename T>
  Buf& Put(T v) {
    bytes.append(reinterpret_cast<const char*>(&v), sizeof(T));
    return *this;
  }
  Buf& Str(const std::string& s) {
    Put<uint64_t>(s.size());
    bytes += s;
    return *this;
  }
};

// A GGUF with only tokenizer metadata: model, pre, tokens, merges, token types.
std::string ToyGguf(const std::string& model, const std::string& pre, const BpeVocab& v) {
  Buf kv;
  kv.Str("tokenizer.ggml.model").Put<uint32_t>(8).Str(model);
  kv.Str("tokenizer.ggml.pre").Put<uint32_t>(8).Str(pre);
  kv.Str("tokenizer.ggml.tokens").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(v.tokens.size());
  for (const std::string& t : v.tokens) kv.Str(t);
  kv.Str("tokenizer.ggml.merges").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(v.merges.size());
  for (const auto& [l, r] : v.merges) kv.Str(l + " " + r);
  kv.Str("tokenizer.ggml.token_type").Put<uint32_t>(9).Put<uint32_t>(5).Put<uint64_t>(v.tokens.size());
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    bool added = std::find(v.added_ids.begin(), v.added_ids.end(), static_cast<int32_t>(i)) != v.added_ids.end();
    kv.Put<int32_t>(added ? 3 : 1);
  }
  kv.Str("tokenizer.ggml.eos_token_id").Put<uint32_t>(4).Put<uint32_t>(static_cast<uint32_t>(v.tokens.size() - 1));
  Buf f;
  f.bytes = "GGUF";
  f.Put<uint32_t>(3).Put<uint64_t>(0).Put<uint64_t>(6);
  return f.bytes + kv.bytes;
}

TEST(BpeGguf, LoadsToyTokenizer) {
  BpeVocab v = ToyVocab({"34"}, {{"3", "4"}}, {"<|im_end|>"}, {});
  GgufFile g = GgufFile::FromBytes("toy.gguf", ToyGguf("gpt2", "smollm", v));
  auto t = LoadBpeTokenizerFromGguf(g);
  EXPECT_EQ(t->eos_id(), 257);
  EXPECT_EQ(t->Encode("34<|im_end|>"), (std::vector<int32_t>{'3', '4', 257}));  // smollm isolates digits.
  GgufFile g2 = GgufFile::FromBytes("toy.gguf", ToyGguf("gpt2", "gpt2", v));
  EXPECT_EQ(LoadBpeTokenizerFromGguf(g2)->Encode("34"), (std::vector<int32_t>{256}));
}

TEST(BpeGguf, RejectsOtherModelsAndUnknownPre) {
  BpeVocab v = ToyVocab({}, {}, {}, {});
  GgufFile spm = GgufFile::FromBytes("spm.gguf", ToyGguf("llama", "default", v));
  EXPECT_NE(ErrorOf([&] { LoadBpeTokenizerFromGguf(spm); }).find("spm.gguf: tokenizer.ggml.model is 'llama'"),
            std::string::npos);
  GgufFile odd = GgufFile::FromBytes("odd.gguf", ToyGguf("gpt2", "mystery", v));
  EXPECT_NE(ErrorOf([&] { LoadBpeTokenizerFromGguf(odd); }).find("odd.gguf: tokenizer.ggml.pre: unknown"),
            std::string::npos);
}

// ---------------------------------------------------------------------------
// The real SmolLM2 tokenizer against HF `tokenizers`.

std::string CachedModelPath() {
  const char* cache = std::getenv("DFAR_CACHE");
  std::string root = cache != nullptr && *cache != '\0' ? cache : std::string(DFAR_SOURCE_DIR) + "/.cache";
  return root + "/models/smollm2-135m-instruct.gguf";
}

json LoadGolden() {
  std::ifstream in(std::string(DFAR_SOURCE_DIR) + "/tests/fixtures/tokenizer/smollm2_golden.json");
  EXPECT_TRUE(in.good()) << "golden fixture missing";
  json j = json::parse(in);
  EXPECT_EQ(j.at("format"), "dfar-tokenizer-golden");
  EXPECT_EQ(j.at("version"), 1);
  return j;
}

class BpeSmolLM2 : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = CachedModelPath();
    if (!std::ifstream(path)) GTEST_SKIP() << path << " is absent; run scripts/fetch_model.sh";
    gguf_ = std::make_unique<GgufFile>(GgufFile::Open(path));
    tok_ = LoadBpeTokenizerFromGguf(*gguf_);
  }
  std::unique_ptr<GgufFile> gguf_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(BpeSmolLM2, MatchesHfTokenizersGolden) {
  json golden = LoadGolden();
  const json& cases = golden.at("cases");
  ASSERT_GE(cases.size(), 200u);
  int wrong = 0;
  for (const json& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const std::vector<int32_t> want = c.at("ids").get<std::vector<int32_t>>();
    std::vector<int32_t> got = tok_->Encode(text);
    if (got != want) ++wrong;
    EXPECT_EQ(got, want) << "text: " << json(text).dump();
    if (!c.value("lossy", false)) {
      EXPECT_EQ(tok_->Decode(got), text);
    }
  }
  EXPECT_EQ(wrong, 0) << "of " << cases.size() << " golden strings";
}

TEST_F(BpeSmolLM2, Properties) {
  EXPECT_EQ(tok_->kind(), "bpe");
  EXPECT_EQ(tok_->vocab_size(), 49152);
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_EQ(tok_->eos_id(), 2);
  EXPECT_EQ(tok_->pad_id(), 2);
  EXPECT_EQ(tok_->Piece(1), "<|im_start|>");
  EXPECT_EQ(tok_->Piece(2), "<|im_end|>");
  std::vector<int32_t> the = tok_->Encode(" the");
  ASSERT_EQ(the.size(), 1u);
  EXPECT_EQ(tok_->Piece(the[0]), "\xC4\xA0the");  // "Ġthe"
}

TEST_F(BpeSmolLM2, ArbitraryBytesRoundTrip) {
  std::vector<char> has_token;  // Bytes with a token of their own; the others are dropped.
  for (int b = 0; b < 256; ++b) {
    if (!tok_->Encode(std::string(1, static_cast<char>(b))).empty()) has_token.push_back(static_cast<char>(b));
  }
  EXPECT_EQ(has_token.size(), 256u - 21u);
  EXPECT_TRUE(tok_->Encode("\x04").empty());
  EXPECT_EQ(tok_->Decode(tok_->Encode("a\xFF\x04"
                                      "b")),
            "ab");
  std::mt19937 rng(455);
  for (int iter = 0; iter < 200; ++iter) {
    std::string s(rng() % 64, '\0');
    for (char& c : s) c = has_token[rng() % has_token.size()];  // Mostly invalid UTF-8.
    EXPECT_EQ(tok_->Decode(tok_->Encode(s)), s);
  }
}

TEST_F(BpeSmolLM2, ConcurrentEncodeAgrees) {
  json golden = LoadGolden();
  std::vector<std::string> texts;
  for (const json& c : golden.at("cases")) texts.push_back(c.at("text").get<std::string>());
  std::vector<std::vector<std::vector<int32_t>>> results(4);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (const std::string& s : texts) results[k].push_back(tok_->Encode(s));
    });
  }
  for (std::thread& th : threads) th.join();
  for (int k = 1; k < 4; ++k) EXPECT_EQ(results[k], results[0]);
}

// The GGUF's vocabulary written as a HF tokenizer.json loads to the same tokenizer.
TEST_F(BpeSmolLM2, HfJsonOfSameVocabAgrees) {
  std::vector<std::string> tokens = gguf_->GetStringArray("tokenizer.ggml.tokens");
  std::vector<int32_t> types = gguf_->GetI32Array("tokenizer.ggml.token_type");
  json vocab = json::object(), added = json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    vocab[tokens[i]] = i;
    if (types[i] == 3) added.push_back({{"id", i}, {"content", tokens[i]}, {"special", true}});
  }
  json j;
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", gguf_->GetStringArray("tokenizer.ggml.merges")}};
  j["added_tokens"] = added;
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", json::array({{{"type", "Digits"}, {"individual_digits", true}},
                                                       {{"type", "ByteLevel"}, {"use_regex", true}}})}};
  TempDir dir("smol");
  auto hf = LoadBpeTokenizerFromHfJson(WriteHf(dir.path(), j, nullptr));
  const json golden = LoadGolden();
  for (const json& c : golden.at("cases")) {
    const std::string text = c.at("text").get<std::string>();
    EXPECT_EQ(hf->Encode(text), tok_->Encode(text)) << json(text).dump();
  }
}

}  // namespace
}  // namespace dfar
