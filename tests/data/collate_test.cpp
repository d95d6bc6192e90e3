#include "dfar/data/collate.h"

#include <gtest/gtest.h>

#include <map>

#include "dfar/core/error.h"

namespace dfar {
namespace {

// One token per byte (id = byte + 10), so token counts are easy to reason about.
class ByteTokenizer : public Tokenizer {
 public:
  explicit ByteTokenizer(int32_t bos = 1) : bos_(bos) {}
  std::vector<int32_t> Encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    for (unsigned char c : text) ids.push_back(c + 10);
    return ids;
  }
  std::string Decode(const std::vector<int32_t>& ids) const override {
    std::string text;
    for (int32_t id : ids) text += static_cast<char>(id - 10);
    return text;
  }
  std::string Piece(int32_t id) const override { return Decode({id}); }
  int64_t vocab_size() const override { return 266; }
  int32_t bos_id() const override { return bos_; }
  bool add_bos() const override { return bos_ >= 0; }
  int32_t eos_id() const override { return 2; }
  int32_t pad_id() const override { return 0; }
  std::string kind() const override { return "byte"; }

 private:
  int32_t bos_;
};

std::vector<int32_t> Ids(const Tokenizer& tok, const std::string& text) {
  return tok.Encode(text);
}

const std::string kTemplates = std::string(DFAR_SOURCE_DIR) + "/configs/templates.yaml";
const std::string kFixture = std::string(DFAR_SOURCE_DIR) + "/tests/fixtures/spm/tokenizer.model";

std::vector<Example> SomeExamples() {
  const char* rows[][3] = {
      {"I only reported half my income on my tax forms.", "1", "Tax evasion is illegal and unfair."},
      {"I went to the cafeteria to have my lunch.", "0", "Eating lunch is a natural need."},
      {"I crushed the frog", "1", "Hurting animals for no reason is cruel."},
      {"I decided to start a book club with my friends.", "0", "Reading together is wholesome."},
  };
  std::vector<Example> out;
  for (int i = 0; i < 4; ++i) {
    Example ex;
    ex.index = i;
    ex.line = i + 2;
    ex.statement = rows[i][0];
    ex.label = rows[i][1][0] - '0';
    ex.reason = rows[i][2];
    out.push_back(ex);
  }
  return out;
}

// The labels of one flat range, supervised ones only, in order.
std::vector<int32_t> SupervisedLabels(const Batch& b, size_t begin, size_t end) {
  std::vector<int32_t> out;
  for (size_t i = begin; i < end; ++i) {
    if (b.labels[i] != kIgnoreIndex) out.push_back(b.labels[i]);
  }
  return out;
}

TEST(CollateTokenize, AddsBosAndEosAtTheBoundary) {
  ByteTokenizer tok;
  const TokenizedExample ex = Tokenize(tok, {"ab", "xyz"}, 42, 100);
  EXPECT_EQ(ex.index, 42);
  const std::vector<int32_t> want = {1, 'a' + 10, 'b' + 10, 'x' + 10, 'y' + 10, 'z' + 10, 2};
  EXPECT_EQ(ex.ids, want);
  EXPECT_EQ(ex.prompt_len, 3);
  EXPECT_FALSE(ex.truncated);

  const TokenizedExample no_bos = Tokenize(ByteTokenizer(-1), {"ab", "xyz"}, 0, 100);
  EXPECT_EQ(no_bos.prompt_len, 2);
  EXPECT_EQ(no_bos.ids.size(), 6u);
}

TEST(CollateTokenize, CutsTheTargetFromItsEnd) {
  ByteTokenizer tok;
  const TokenizedExample fits = Tokenize(tok, {"ab", "xyz"}, 0, 7);
  EXPECT_FALSE(fits.truncated);
  EXPECT_EQ(fits.ids.back(), 2);
  // One short: the whole target stays, but without EOS it counts as truncated.
  const TokenizedExample no_eos = Tokenize(tok, {"ab", "xyz"}, 0, 6);
  EXPECT_TRUE(no_eos.truncated);
  EXPECT_EQ(no_eos.ids, (std::vector<int32_t>{1, 'a' + 10, 'b' + 10, 'x' + 10, 'y' + 10, 'z' + 10}));
  const TokenizedExample cut = Tokenize(tok, {"ab", "xyz"}, 0, 4);
  EXPECT_TRUE(cut.truncated);
  EXPECT_EQ(cut.ids, (std::vector<int32_t>{1, 'a' + 10, 'b' + 10, 'x' + 10}));
  EXPECT_EQ(cut.prompt_len, 3);
}

TEST(CollateTokenize, PromptWithoutRoomNamesTheExample) {
  ByteTokenizer tok;
  try {
    Tokenize(tok, {"abc", "x"}, 42, 4);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("example 42"), std::string::npos) << e.message();
  }
}

TEST(CollatePadded, ShiftsLabelsAndSupervisesOnlyTheTarget) {
  ByteTokenizer tok;
  const std::vector<TokenizedExample> exs = {Tokenize(tok, {"ab", "xyz"}, 5, 100),
                                             Tokenize(tok, {"abcd", "q"}, 6, 100)};
  const Batch b = CollatePadded(exs, tok.pad_id());
  ASSERT_EQ(b.rows, 2);
  ASSERT_EQ(b.cols, 7);
  // Row 0: [bos a b x y z eos]; position 2 (b) predicts x.
  const std::vector<int32_t> row0 = {kIgnoreIndex, kIgnoreIndex, 'x' + 10, 'y' + 10, 'z' + 10, 2, kIgnoreIndex};
  EXPECT_EQ(std::vector<int32_t>(b.labels.begin(), b.labels.begin() + 7), row0);
  // Row 1: [bos a b c d q eos] is also 7 long; only "q" and EOS are labels.
  EXPECT_EQ(SupervisedLabels(b, 7, 14), (std::vector<int32_t>{'q' + 10, 2}));
  EXPECT_EQ(b.supervised_tokens, 6);
  EXPECT_EQ(b.real_tokens, 14);
  EXPECT_EQ(b.example_index, (std::vector<int64_t>{5, 6}));
}

TEST(CollatePadded, PadsWithPadIdIgnoreAndZeros) {
  ByteTokenizer tok;
  const std::vector<TokenizedExample> exs = {Tokenize(tok, {"a", "b"}, 0, 100), Tokenize(tok, {"abcdef", "b"}, 1, 100)};
  const Batch b = CollatePadded(exs, 99);
  ASSERT_EQ(b.cols, 9);
  for (int64_t t = 4; t < 9; ++t) {  // Row 0 has 4 real tokens.
    EXPECT_EQ(b.input_ids[t], 99);
    EXPECT_EQ(b.labels[t], kIgnoreIndex);
    EXPECT_EQ(b.segment_ids[t], 0);
    EXPECT_EQ(b.position_ids[t], 0);
  }
  for (int64_t t = 0; t < 4; ++t) {
    EXPECT_EQ(b.segment_ids[t], 1);
    EXPECT_EQ(b.position_ids[t], t);
  }
  EXPECT_EQ(b.real_tokens, 4 + 9);
  const Batch empty = CollatePadded({}, 0);
  EXPECT_EQ(empty.rows, 0);
  EXPECT_TRUE(empty.input_ids.empty());
}

// For every shipped template and both objectives, with the real fixture
// tokenizer: the supervised labels of a row are exactly its target ids plus
// EOS, in order, so no prompt token can ever be a label.
TEST(CollatePadded, RealTemplatesNeverSuperviseThePrompt) {
  auto tok = LoadSentencePieceTokenizer(kFixture);
  const TemplateLibrary lib = TemplateLibrary::Load(kTemplates);
  for (const auto& [name, tmpl] : lib.all()) {
    for (Objective obj : {Objective::kLabel, Objective::kLabelReason}) {
      std::vector<TokenizedExample> exs;
      std::vector<std::vector<int32_t>> targets;
      for (const Example& ex : SomeExamples()) {
        const RenderedExample r = Render(tmpl, ex, obj);
        exs.push_back(Tokenize(*tok, r, ex.index, 512));
        // SentencePiece's own "▁" prefix stands for the target's leading space.
        const std::string target = !r.target.empty() && r.target[0] == ' ' ? r.target.substr(1) : r.target;
        targets.push_back(tok->Encode(target));
        targets.back().push_back(tok->eos_id());
      }
      const Batch b = CollatePadded(exs, tok->pad_id());
      for (int64_t row = 0; row < b.rows; ++row) {
        const size_t begin = static_cast<size_t>(row * b.cols);
        EXPECT_EQ(SupervisedLabels(b, begin, begin + b.cols), targets[row]) << name << " " << ObjectiveName(obj);
        // The first label sits at the last prompt position.
        EXPECT_NE(b.labels[begin + exs[row].prompt_len - 1], kIgnoreIndex);
        for (int64_t t = 0; t + 1 < exs[row].prompt_len; ++t) EXPECT_EQ(b.labels[begin + t], kIgnoreIndex);
      }
    }
  }
}

TEST(CollatePadded, ObjectiveLSupervisesOnlyTheLabelWord) {
  auto tok = LoadSentencePieceTokenizer(kFixture);
  const TemplateLibrary lib = TemplateLibrary::Load(kTemplates);
  for (const Example& ex : SomeExamples()) {
    const TokenizedExample t = Tokenize(*tok, Render(lib.Find("llama2"), ex, Objective::kLabel), ex.index, 512);
    const Batch b = CollatePadded({t}, tok->pad_id());
    std::vector<int32_t> want = tok->Encode(ex.label == kEthical ? "ethical" : "unethical");
    want.push_back(tok->eos_id());
    EXPECT_EQ(SupervisedLabels(b, 0, b.labels.size()), want);
    std::vector<int32_t> words = want;
    words.pop_back();
    EXPECT_EQ(tok->Decode(words), ex.label == kEthical ? "ethical" : "unethical");
  }
}

std::vector<TokenizedExample> VariedExamples(const Tokenizer& tok) {
  const std::vector<std::pair<std::string, std::string>> texts = {
      {"abc", "xy"}, {"a", "z"}, {"abcdefgh", "long target"}, {"ab", "q"}, {"abcd", "rs"}, {"x", "yyyyyy"},
  };
  std::vector<TokenizedExample> out;
  for (size_t i = 0; i < texts.size(); ++i) {
    out.push_back(Tokenize(tok, {texts[i].first, texts[i].second}, static_cast<int64_t>(i) + 100, 16));
  }
  return out;
}

TEST(CollatePacked, SegmentsRestartPositionsAndNeverCrossLabels) {
  ByteTokenizer tok;
  const std::vector<TokenizedExample> exs = VariedExamples(tok);
  const int64_t max_len = 16;
  const Batch b = CollatePacked(exs, tok.pad_id(), max_len);
  EXPECT_LE(b.cols, max_len);
  EXPECT_EQ(b.example_index, (std::vector<int64_t>{100, 101, 102, 103, 104, 105}));
  size_t next = 0;  // Examples must appear in order.
  for (int64_t row = 0; row < b.rows; ++row) {
    int32_t expected_segment = 1;
    for (int64_t t = 0; t < b.cols;) {
      const size_t i = static_cast<size_t>(row * b.cols + t);
      if (b.segment_ids[i] == 0) break;  // Padding runs to the row's end.
      ASSERT_EQ(b.segment_ids[i], expected_segment);
      const TokenizedExample& ex = exs[next++];
      const int64_t len = static_cast<int64_t>(ex.ids.size());
      for (int64_t k = 0; k < len; ++k) {
        EXPECT_EQ(b.segment_ids[i + k], expected_segment);
        EXPECT_EQ(b.position_ids[i + k], k);
        EXPECT_EQ(b.input_ids[i + k], ex.ids[k]);
      }
      EXPECT_EQ(b.labels[i + len - 1], kIgnoreIndex) << "label crosses into the next segment";
      ++expected_segment;
      t += len;
    }
    for (int64_t t = 0; t < b.cols; ++t) {
      const size_t i = static_cast<size_t>(row * b.cols + t);
      if (b.segment_ids[i] == 0) EXPECT_EQ(b.labels[i], kIgnoreIndex);
    }
  }
  EXPECT_EQ(next, exs.size());
  EXPECT_LT(b.rows, static_cast<int64_t>(exs.size())) << "nothing was packed";
}

// Per example: its (ids, labels) as a segment of a packed row, keyed by index.
std::map<int64_t, std::pair<std::vector<int32_t>, std::vector<int32_t>>> Samples(const Batch& b) {
  std::map<int64_t, std::pair<std::vector<int32_t>, std::vector<int32_t>>> out;
  size_t next = 0;
  for (int64_t row = 0; row < b.rows; ++row) {
    int32_t segment = 0;
    for (int64_t t = 0; t < b.cols; ++t) {
      const size_t i = static_cast<size_t>(row * b.cols + t);
      if (b.segment_ids[i] == 0) continue;
      if (b.segment_ids[i] != segment) {
        segment = b.segment_ids[i];
        ++next;
      }
      auto& sample = out[b.example_index[next - 1]];
      sample.first.push_back(b.input_ids[i]);
      sample.second.push_back(b.labels[i]);
    }
  }
  return out;
}

TEST(CollatePacked, MatchesPaddedPerExample) {
  ByteTokenizer tok;
  const std::vector<TokenizedExample> exs = VariedExamples(tok);
  const Batch packed = CollatePacked(exs, tok.pad_id(), 16);
  const Batch padded = CollatePadded(exs, tok.pad_id());
  EXPECT_EQ(Samples(packed), Samples(padded));
  EXPECT_EQ(packed.supervised_tokens, padded.supervised_tokens);
  EXPECT_EQ(packed.real_tokens, padded.real_tokens);
  EXPECT_LT(packed.input_ids.size(), padded.input_ids.size());
}

TEST(CollatePacked, GreedyInOrderAndRejectsOverlongExamples) {
  ByteTokenizer tok;
  // Lengths 4, 4, 4 (bos + 1 prompt + 1 target + eos) into rows of 8: two rows.
  std::vector<TokenizedExample> exs;
  for (int i = 0; i < 3; ++i) exs.push_back(Tokenize(tok, {"a", "b"}, i, 8));
  const Batch b = CollatePacked(exs, tok.pad_id(), 8);
  EXPECT_EQ(b.rows, 2);
  EXPECT_EQ(b.cols, 8);
  EXPECT_EQ(b.segment_ids[4], 2);
  EXPECT_EQ(b.segment_ids[8 + 4], 0);
  EXPECT_THROW(CollatePacked(exs, tok.pad_id(), 3), Error);
}

}  // namespace
}  // namespace dfar
