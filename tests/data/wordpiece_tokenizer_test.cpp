// Tests for the WordPiece tokenizer: a toy tokenizer.json pins down each rule
// (normalizer steps, pre-tokenizer splits, greedy longest match, [UNK],
// added tokens, post-processor, truncation, load errors); the real
// all-MiniLM-L6-v2 tokenizer (cached by scripts/fetch_encoder.sh) must give
// exactly HF `tokenizers`' ids for every string in
// tests/fixtures/encoder/golden.json (tools/make_encoder_golden.py), accented,
// CJK, control, special-token and over-long strings included.
#include "dfar/data/wordpiece_tokenizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "dfar/core/error.h"
#include "helpers/test_util.h"

namespace dfar {
namespace {

using nlohmann::json;
using testing::ErrorOf;
namespace fs = std::filesystem;

// ids: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, then the words below in order.
const std::vector<std::string> kToyWords = {"un",     "una", "##aff",  "##able", "##ffable", "the", "cafe", "naive",
                                            "zoe",    ",",   "!",      "$",      "a",        "##a", "中",   "ǆ",
                                            "σωμεγα", "еж",  "thethe", "각",     "か",       "aé"};

json ToyTokenizerJson() {
  json vocab = json::object();
  const std::vector<std::string> special = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  int id = 0;
  for (const std::string& s : special) vocab[s] = id++;
  for (const std::string& w : kToyWords) vocab[w] = id++;
  json added = json::array();
  for (int i = 0; i < 5; ++i) {
    added.push_back({{"id", i},
                     {"content", special[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer",
       {{"type", "BertNormalizer"},
        {"clean_text", true},
        {"handle_chinese_chars", true},
        {"strip_accents", nullptr},
        {"lowercase", true}}},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "[CLS]"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                {{"SpecialToken", {{"id", "[SEP]"}, {"type_id", 0}}}}})},
        {"special_tokens",
         {{"[CLS]", {{"id", "[CLS]"}, {"ids", {2}}, {"tokens", {"[CLS]"}}}},
          {"[SEP]", {{"id", "[SEP]"}, {"ids", {3}}, {"tokens", {"[SEP]"}}}}}}}},
      {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}}},
      {"model",
       {{"type", "WordPiece"},
        {"unk_token", "[UNK]"},
        {"continuing_subword_prefix", "##"},
        {"max_input_chars_per_word", 100},
        {"vocab", vocab}}},
  };
}

WordPieceTokenizer Toy(const json& j = ToyTokenizerJson()) {
  return WordPieceTokenizer::FromJson(j.dump(), "toy.json");
}

// The ids of the given pieces in the toy vocab, between [CLS] and [SEP].
std::vector<int32_t> Ids(const WordPieceTokenizer& t, const std::vector<std::string>& pieces) {
  std::vector<int32_t> ids = {2};
  for (const std::string& p : pieces) {
    ids.push_back(t.TokenToId(p));
    EXPECT_GE(ids.back(), 0) << "'" << p << "' is not in the toy vocab";
  }
  ids.push_back(3);
  return ids;
}

TEST(WordPieceTokenizerTest, GreedyLongestMatchFirstWithContinuationPrefix) {
  const WordPieceTokenizer t = Toy();
  // "una" is longer than "un", so it wins, and "##ffable" covers the rest.
  EXPECT_EQ(t.Encode("unaffable"), Ids(t, {"una", "##ffable"}));
  EXPECT_EQ(t.Encode("aaa"), Ids(t, {"a", "##a", "##a"}));
  // No cover: the whole word is one [UNK], not "un" + [UNK].
  EXPECT_EQ(t.Encode("unx the"), Ids(t, {"[UNK]", "the"}));
  EXPECT_EQ(t.Encode(""), Ids(t, {}));
  EXPECT_EQ(t.vocab_size(), 5 + static_cast<int64_t>(kToyWords.size()));
  EXPECT_EQ(t.IdToToken(7), "##aff");
  EXPECT_EQ(t.TokenToId("missing"), -1);
  EXPECT_NE(ErrorOf([&] { t.IdToToken(1000); }).find("toy.json: token id 1000"), std::string::npos);
}

TEST(WordPieceTokenizerTest, NormalizerCleansSpacesChineseStripsAccentsAndLowercases) {
  const WordPieceTokenizer t = Toy();
  EXPECT_EQ(t.Normalize("Café NAÏVE Zoë"), "cafe naive zoe");
  EXPECT_EQ(t.Normalize("ÀÉÎÕÜ ǅ ΣΩΜΈΓΑ Ёж"), "aeiou ǆ σωμεγα еж");
  EXPECT_EQ(t.Normalize("e\xcc\x81"), "e");  // e + U+0301: the Mn mark goes.
  // U+200B (Cf) and U+00AD (Cf) are dropped, U+0085 (Cc) too; NBSP, TAB and U+3000 become spaces.
  EXPECT_EQ(t.Normalize("th\u200be\u00ad!"), "the!");
  EXPECT_EQ(t.Normalize("a\u00a0b\tc\u3000d\u0085e"), "a b c de");
  EXPECT_EQ(t.Normalize("a中b"), "a 中 b");
  EXPECT_EQ(t.Normalize("각 が"), "\u1100\u1161\u11a8 か");  // Hangul to jamo; the kana loses its voicing mark.
  EXPECT_EQ(t.Normalize("İ ẞ Å"), "i ß a");
  EXPECT_EQ(t.Normalize("a\xff\xc3("), "a(");  // Invalid bytes read as U+FFFD, which clean_text drops.
  EXPECT_EQ(t.Encode("Café, NAÏVE Zoë!"), Ids(t, {"cafe", ",", "naive", "zoe", "!"}));
  EXPECT_EQ(t.Encode("th\u200be\u200bthe"), Ids(t, {"thethe"}));
}

TEST(WordPieceTokenizerTest, StripAccentsFollowsLowercaseWhenNull) {
  json j = ToyTokenizerJson();
  j["normalizer"]["lowercase"] = false;  // strip_accents null -> false as well.
  const WordPieceTokenizer keep = Toy(j);
  EXPECT_FALSE(keep.normalizer().strip_accents);
  EXPECT_EQ(keep.Normalize("Café İ"), "Café İ");
  EXPECT_EQ(keep.Encode("aé"), Ids(keep, {"aé"}));
  j["normalizer"]["strip_accents"] = true;
  EXPECT_EQ(Toy(j).Normalize("Café"), "Cafe");
  j["normalizer"] = nullptr;
  EXPECT_EQ(Toy(j).Normalize("Ca\u200bfé"), "Ca\u200bfé");
}

TEST(WordPieceTokenizerTest, PreTokenizerSplitsWhitespaceAndIsolatesPunctuation) {
  const WordPieceTokenizer t = Toy();
  EXPECT_EQ(t.Encode("the,the!"), Ids(t, {"the", ",", "the", "!"}));
  EXPECT_EQ(t.Encode("$the"), Ids(t, {"$", "the"}));  // ASCII symbols count as punctuation.
  EXPECT_EQ(t.Encode("  the\n\tthe\u2028the  "), Ids(t, {"the", "the", "the"}));
  EXPECT_EQ(t.Encode("a中a"), Ids(t, {"a", "中", "a"}));
}

TEST(WordPieceTokenizerTest, MaxInputCharsPerWordCountsCodePoints) {
  json j = ToyTokenizerJson();
  j["model"]["max_input_chars_per_word"] = 5;
  const WordPieceTokenizer t = Toy(j);
  EXPECT_EQ(t.Encode("aaaaa"), Ids(t, {"a", "##a", "##a", "##a", "##a"}));
  EXPECT_EQ(t.Encode("aaaaaa"), Ids(t, {"[UNK]"}));
  EXPECT_EQ(t.Encode("ÀÀÀÀÀ"), Ids(t, {"a", "##a", "##a", "##a", "##a"}));  // Counted after normalization.
  j["model"]["max_input_chars_per_word"] = 2;
  EXPECT_EQ(Toy(j).Encode("ЁЖ"), Ids(t, {"еж"}));  // 4 bytes, 2 code points.
}

TEST(WordPieceTokenizerTest, AddedTokensMatchInRawText) {
  const WordPieceTokenizer t = Toy();
  EXPECT_EQ(t.Encode("the[MASK]the"), Ids(t, {"the", "[MASK]", "the"}));
  EXPECT_EQ(t.Encode("[CLS][SEP]"), Ids(t, {"[CLS]", "[SEP]"}));
  // Not normalized: lowercase "[mask]" is ordinary text ("[", "mask" -> [UNK], "]").
  const std::vector<int32_t> lower = t.Encode("[mask]");
  EXPECT_EQ(lower.size(), 5u);
  EXPECT_EQ(lower[2], t.unk_id());
  // An added token outside model.vocab extends the id range (HF's added vocabulary).
  json j = ToyTokenizerJson();
  j["added_tokens"].push_back({{"id", 40}, {"content", "<extra>"}, {"special", true}});
  const WordPieceTokenizer x = Toy(j);
  EXPECT_EQ(x.vocab_size(), 41);
  EXPECT_EQ(x.IdToToken(40), "<extra>");
  EXPECT_EQ(x.Encode("the<extra>"), (std::vector<int32_t>{2, 10, 40, 3}));
  EXPECT_EQ(x.TokenToId("<extra>"), -1);
  EXPECT_NE(ErrorOf([&] { x.IdToToken(39); }).find("token id 39 is not in the vocabulary"), std::string::npos);
}

TEST(WordPieceTokenizerTest, TruncationKeepsRoomForTheSpecialTokens) {
  const WordPieceTokenizer t = Toy();
  EXPECT_EQ(t.num_special_tokens(), 2);
  EXPECT_EQ(t.Encode("the cafe the cafe", 4), Ids(t, {"the", "cafe"}));
  EXPECT_EQ(t.Encode("the cafe", 4), Ids(t, {"the", "cafe"}));
  EXPECT_EQ(t.Encode("the cafe", 2), Ids(t, {}));
  EXPECT_EQ(t.Encode("the cafe the cafe", 0).size(), 6u);
  EXPECT_NE(ErrorOf([&] { t.Encode("the", 1); }).find("max_length 1 leaves no room"), std::string::npos);
}

TEST(WordPieceTokenizerTest, BertProcessingAndNoPostProcessor) {
  json j = ToyTokenizerJson();
  j["post_processor"] = {{"type", "BertProcessing"}, {"sep", {"[SEP]", 3}}, {"cls", {"[CLS]", 2}}};
  EXPECT_EQ(Toy(j).Encode("the"), (std::vector<int32_t>{2, 10, 3}));
  j["post_processor"] = nullptr;
  EXPECT_EQ(Toy(j).Encode("the"), (std::vector<int32_t>{10}));
  EXPECT_EQ(Toy(j).num_special_tokens(), 0);
}

TEST(WordPieceTokenizerTest, LoadErrorsNameTheFileAndKey) {
  auto error_for = [](const std::function<void(json&)>& edit) {
    json j = ToyTokenizerJson();
    edit(j);
    return ErrorOf([&] { WordPieceTokenizer::FromJson(j.dump(), "toy.json"); });
  };
  EXPECT_NE(error_for([](json& j) { j["model"]["type"] = "BPE"; }).find("toy.json: model.type is 'BPE'"),
            std::string::npos);
  EXPECT_NE(error_for([](json& j) { j["model"]["unk_token"] = "<unk>"; }).find("model.unk_token names '<unk>'"),
            std::string::npos);
  EXPECT_NE(error_for([](json& j) { j["model"].erase("vocab"); }).find("toy.json: key model.vocab is missing"),
            std::string::npos);
  EXPECT_NE(error_for([](json& j) { j["model"]["vocab"]["the"] = "x"; }).find("model.vocab[\"the\"]"),
            std::string::npos);
  EXPECT_NE(error_for([](json& j) { j["normalizer"]["type"] = "Lowercase"; }).find("normalizer.type is 'Lowercase'"),
            std::string::npos);
  EXPECT_NE(error_for([](json& j) { j["normalizer"]["lowercase"] = 1; }).find("key normalizer.lowercase has the wrong"),
            std::string::npos);
  EXPECT_NE(error_for([](json& j) { j["pre_tokenizer"]["type"] = "Whitespace"; }).find("pre_tokenizer.type"),
            std::string::npos);
  EXPECT_NE(error_for([](json& j) {
              j["post_processor"]["special_tokens"].erase("[SEP]");
            }).find("post_processor.special_tokens has no entry '[SEP]'"),
            std::string::npos);
  EXPECT_NE(error_for([](json& j) { j["added_tokens"][4]["lstrip"] = true; }).find("'[MASK]' sets lstrip"),
            std::string::npos);
  EXPECT_NE(ErrorOf([] { WordPieceTokenizer::FromJson("{", "bad.json"); }).find("bad.json: not valid JSON"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf([] { WordPieceTokenizer::Load("/nonexistent/tokenizer.json"); }).find("/nonexistent/tokenizer.json"),
      std::string::npos);
}

// ---------------------------------------------------------------------------
// The real tokenizer against HF `tokenizers`.

std::string CachedTokenizer() {
  const char* cache = std::getenv("DFAR_CACHE");
  const std::string root = cache != nullptr && *cache != '\0' ? cache : std::string(DFAR_SOURCE_DIR) + "/.cache";
  return root + "/models/all-minilm-l6-v2/tokenizer.json";
}

json Golden() {
  std::ifstream in(std::string(DFAR_SOURCE_DIR) + "/tests/fixtures/encoder/golden.json");
  EXPECT_TRUE(in) << "tests/fixtures/encoder/golden.json is missing";
  json g = json::parse(in);
  EXPECT_EQ(g.at("format"), "dfar-encoder-golden");
  EXPECT_EQ(g.at("version"), 1);
  return g;
}

TEST(WordPieceTokenizerGoldenTest, IdsEqualHfTokenizersForEveryFixtureString) {
  const std::string path = CachedTokenizer();
  if (!fs::exists(path)) GTEST_SKIP() << path << " is absent; run scripts/fetch_encoder.sh";
  const json g = Golden();
  ASSERT_EQ(static_cast<uint64_t>(fs::file_size(path)), g.at("generator").at("tokenizer_json_bytes").get<uint64_t>())
      << path << " is not the file the fixture was made from";
  const WordPieceTokenizer t = WordPieceTokenizer::Load(path);
  const int64_t max_length = g.at("max_seq_length").get<int64_t>();
  size_t checked = 0, tokens = 0;
  for (const char* key : {"cases", "tokenizer_cases"}) {
    for (const json& c : g.at(key)) {
      const std::string text = c.at("text").get<std::string>();
      const std::vector<int32_t> want = c.at("ids").get<std::vector<int32_t>>();
      EXPECT_EQ(t.Encode(text, max_length), want) << key << ": " << text.substr(0, 120);
      ++checked;
      tokens += want.size();
    }
  }
  EXPECT_GE(checked, 48u);
  std::cout << "# " << checked << " strings, " << tokens << " ids, all equal to HF tokenizers "
            << g.at("generator").at("tokenizers").get<std::string>() << "\n";
}

// FNV-1a 64 over little-endian u32 values and raw bytes, as tools/make_encoder_golden.py hashes.
struct Fnv1a64 {
  uint64_t h = 0xCBF29CE484222325ull;
  void Bytes(const std::string& s) {
    for (unsigned char b : s) h = (h ^ b) * 0x100000001B3ull;
  }
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) h = (h ^ ((v >> (8 * i)) & 0xFF)) * 0x100000001B3ull;
  }
  std::string Hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
  }
};

std::string Utf8(char32_t c) {
  std::string s;
  if (c < 0x80) {
    s += static_cast<char>(c);
  } else if (c < 0x800) {
    s += {static_cast<char>(0xC0 | (c >> 6)), static_cast<char>(0x80 | (c & 0x3F))};
  } else if (c < 0x10000) {
    s += {static_cast<char>(0xE0 | (c >> 12)), static_cast<char>(0x80 | ((c >> 6) & 0x3F)),
          static_cast<char>(0x80 | (c & 0x3F))};
  } else {
    s += {static_cast<char>(0xF0 | (c >> 18)), static_cast<char>(0x80 | ((c >> 12) & 0x3F)),
          static_cast<char>(0x80 | ((c >> 6) & 0x3F)), static_cast<char>(0x80 | (c & 0x3F))};
  }
  return s;
}

// Every code point alone, through the normalizer and through Encode("a" c "a"):
// the hashes of HF's results must come out (see every_code_point in the tool).
TEST(WordPieceTokenizerGoldenTest, EveryCodePointNormalizesAndSplitsAsHf) {
  const std::string path = CachedTokenizer();
  if (!fs::exists(path)) GTEST_SKIP() << path << " is absent; run scripts/fetch_encoder.sh";
  const json want = Golden().at("every_code_point");
  const WordPieceTokenizer t = WordPieceTokenizer::Load(path);
  Fnv1a64 norm, ids;
  int64_t n = 0;
  for (char32_t c = 0; c <= 0x10FFFF; ++c) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    const std::string s = Utf8(c);
    const std::string normalized = t.Normalize(s);
    norm.U32(static_cast<uint32_t>(normalized.size()));
    norm.Bytes(normalized);
    const std::vector<int32_t> e = t.Encode("a" + s + "a");
    ids.U32(static_cast<uint32_t>(e.size()));
    for (int32_t id : e) ids.U32(static_cast<uint32_t>(id));
    ++n;
  }
  EXPECT_EQ(n, want.at("code_points").get<int64_t>());
  EXPECT_EQ(norm.Hex(), want.at("normalized_fnv1a64").get<std::string>());
  EXPECT_EQ(ids.Hex(), want.at("ids_fnv1a64").get<std::string>());
}

}  // namespace
}  // namespace dfar
