#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>

#include <filesystem>

#include "dfar/core/error.h"
#include "dfar/data/prompt_template.h"
#include "dfar/data/tokenizer.h"

namespace dfar {
namespace {

// Made by tools/make_spm_fixture.py: unigram, 512 pieces, first 300 DFAR rows.
const std::string kFixture = std::string(DFAR_SOURCE_DIR) + "/tests/fixtures/spm/tokenizer.model";

std::string TempDir(const std::string& name) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "dfar_tokenizer_test" / name;
  std::filesystem::remove_all(dir);
  return dir.string();
}

// A small, varied corpus; training on it takes well under a second.
std::vector<std::string> Corpus() {
  const std::vector<std::string> statements = {
      "I only reported half my income on my tax forms.",
      "I went to the cafeteria to have my lunch.",
      "I crushed the frog.",
      "I decided to start a book club with my friends.",
      "I helped my neighbour carry her groceries.",
      "I lied to my boss about being sick.",
  };
  std::vector<std::string> texts;
  for (int round = 0; round < 20; ++round) {
    for (const std::string& s : statements) texts.push_back(s + " It happened " + std::to_string(round) + " times.");
  }
  return texts;
}

TEST(TokenizerSentencePiece, FixtureHasReservedIds) {
  auto tok = LoadSentencePieceTokenizer(kFixture);
  EXPECT_EQ(tok->kind(), "sentencepiece");
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->pad_id(), 0);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->Piece(3), "<unk>");
}

TEST(TokenizerSentencePiece, RoundTripsAnyUtf8) {
  auto tok = LoadSentencePieceTokenizer(kFixture);
  const std::vector<std::string> texts = {
      "I crushed the frog",
      "It can\xE2\x80\x99t be unethical.",                          // Curly apostrophe, as in DFAR.
      "two  spaces, a\ttab and a\nnewline \n ### Answer: ",         // Whitespace is kept as is.
      "caf\xC3\xA9 \xF0\x9F\x90\xB8 \xE6\xBC\xA2\xE5\xAD\x97 30%",  // Unseen characters go through bytes.
      "",
  };
  for (const std::string& text : texts) {
    const std::vector<int32_t> ids = tok->Encode(text);
    for (int32_t id : ids) EXPECT_NE(id, 3) << "unk in: " << text;
    EXPECT_EQ(tok->Decode(ids), text);
  }
}

TEST(TokenizerSentencePiece, ChatMlMarkersAreSingleTokens) {
  auto tok = LoadSentencePieceTokenizer(kFixture);
  const std::vector<int32_t> start = tok->Encode("<|im_start|>");
  const std::vector<int32_t> end = tok->Encode("<|im_end|>");
  ASSERT_FALSE(start.empty());
  ASSERT_FALSE(end.empty());
  EXPECT_EQ(tok->Piece(start.back()), "<|im_start|>");
  EXPECT_EQ(tok->Piece(end.back()), "<|im_end|>");
  const TemplateLibrary lib = TemplateLibrary::Load(std::string(DFAR_SOURCE_DIR) + "/configs/templates.yaml");
  const std::string prompt = RenderPrompt(lib.Find("chatml"), "I fed the cat.");
  int markers = 0;
  for (int32_t id : tok->Encode(prompt)) markers += id == start.back() || id == end.back();
  EXPECT_EQ(markers, 5);
}

TEST(TokenizerSentencePiece, RejectsBadIdsAndFiles) {
  auto tok = LoadSentencePieceTokenizer(kFixture);
  EXPECT_THROW(tok->Piece(512), Error);
  EXPECT_THROW(tok->Decode({5, -1}), Error);
  try {
    LoadSentencePieceTokenizer("/nonexistent/tokenizer.model");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("/nonexistent/tokenizer.model"), std::string::npos) << e.message();
  }
  const std::string dir = TempDir("garbage");
  std::filesystem::create_directories(dir);
  const std::string garbage = dir + "/tokenizer.model";
  FILE* f = fopen(garbage.c_str(), "w");
  fputs("not a model", f);
  fclose(f);
  EXPECT_THROW(LoadSentencePieceTokenizer(garbage), Error);
}

TEST(TokenizerTrain, WritesAModelWithReservedIdsThatRoundTrips) {
  const std::string dir = TempDir("train");
  const std::string path = TrainSentencePieceTokenizer(Corpus(), 300, dir, 7);
  EXPECT_EQ(path, dir + "/tokenizer.model");
  EXPECT_TRUE(std::filesystem::exists(dir + "/tokenizer.vocab"));
  auto tok = LoadSentencePieceTokenizer(path);
  EXPECT_EQ(tok->pad_id(), 0);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->Piece(3), "<unk>");
  EXPECT_EQ(tok->Piece(4), "<|im_start|>");
  EXPECT_EQ(tok->Piece(5), "<|im_end|>");
  EXPECT_LE(tok->vocab_size(), 300);
  const std::string text = "I lied to my boss \xE2\x80\x94 twice.\n";
  EXPECT_EQ(tok->Decode(tok->Encode(text)), text);
}

TEST(TokenizerTrain, IsDeterministic) {
  const std::string a = TrainSentencePieceTokenizer(Corpus(), 300, TempDir("det_a"), 11);
  const std::string b = TrainSentencePieceTokenizer(Corpus(), 300, TempDir("det_b"), 11);
  auto ta = LoadSentencePieceTokenizer(a);
  auto tb = LoadSentencePieceTokenizer(b);
  ASSERT_EQ(ta->vocab_size(), tb->vocab_size());
  for (int32_t id = 0; id < ta->vocab_size(); ++id) ASSERT_EQ(ta->Piece(id), tb->Piece(id)) << id;
}

TEST(TokenizerTrain, RejectsTinyVocabAndNoText) {
  EXPECT_THROW(TrainSentencePieceTokenizer(Corpus(), 100, TempDir("tiny"), 1), Error);
  EXPECT_THROW(TrainSentencePieceTokenizer({"", ""}, 300, TempDir("empty"), 1), Error);
}

TEST(TokenizerSentencePiece, PadFallsBackToEosWithoutAPadPiece) {
  // Llama-2's tokenizer has no pad piece; build one like it.
  const std::string dir = TempDir("nopad");
  std::filesystem::create_directories(dir);
  const std::vector<std::string> corpus = Corpus();
  std::string input = dir + "/corpus.txt";
  FILE* f = fopen(input.c_str(), "w");
  for (const std::string& line : corpus) fprintf(f, "%s\n", line.c_str());
  fclose(f);
  const auto status = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + input + " --model_prefix=" + dir +
      "/m --vocab_size=100 --hard_vocab_limit=false --pad_id=-1 --minloglevel=1 --num_threads=1");
  ASSERT_TRUE(status.ok()) << status.ToString();
  auto tok = LoadSentencePieceTokenizer(dir + "/m.model");
  EXPECT_GE(tok->eos_id(), 0);
  EXPECT_EQ(tok->pad_id(), tok->eos_id());
}

}  // namespace
}  // namespace dfar
