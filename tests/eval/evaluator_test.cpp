// The evaluator on the tiny Llama fixture with a character tokenizer: both
// modes, batch-size invariance, the exactly-once gather, and the report run.
#include "dfar/eval/evaluator.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "dfar/core/error.h"
#include "dfar/data/collate.h"

namespace dfar {
namespace {

// One token per printable character (the fixture's vocabulary is 96):
// 0 pad, 1 bos, 2 eos, 3.. characters ' '..'|'.
class CharTokenizer : public Tokenizer {
 public:
  explicit CharTokenizer(bool add_bos = true) : add_bos_(add_bos) {}
  std::vector<int32_t> Encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    for (char c : text) ids.push_back(3 + (static_cast<unsigned char>(c) - 32 + 93) % 93);
    return ids;
  }
  std::string Decode(const std::vector<int32_t>& ids) const override {
    std::string s;
    for (int32_t id : ids)
      if (id >= 3) s += static_cast<char>(32 + id - 3);
    return s;
  }
  std::string Piece(int32_t id) const override { return Decode({id}); }
  int64_t vocab_size() const override { return 96; }
  int32_t bos_id() const override { return 1; }
  bool add_bos() const override { return add_bos_; }
  int32_t eos_id() const override { return 2; }
  int32_t pad_id() const override { return 0; }
  std::string kind() const override { return "char"; }

 private:
  bool add_bos_;
};

class EvaluatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("dfar_evaluator_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    // Short prompts: the fixture's context is 64 positions.
    std::ofstream((dir_ / "templates.yaml").string())
        << "tiny:\n  prompt: \"Q {statement} A\"\n  target_l: \" {label}\"\n  target_lr: \" {label}. {reason}\"\n";
    config_.prompt.templates_file = (dir_ / "templates.yaml").string();
    config_.prompt.template_name = "tiny";
    config_.prompt.objective = "lr";
    config_.eval.max_new_tokens = 5;
    config_.eval.out_dir = (dir_ / "eval").string();
    model_ = LoadPretrained(std::string(DFAR_SOURCE_DIR) + "/tests/fixtures/models/llama", false);
    model_.tokenizer = std::make_shared<CharTokenizer>();
    for (int i = 0; i < 7; ++i) {
      Example ex;
      ex.index = i;
      ex.statement = std::string(static_cast<size_t>(1 + (i * 5) % 9), static_cast<char>('a' + i));
      ex.label = i % 2;
      ex.reason = "r" + std::to_string(i);
      examples_.push_back(ex);
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  Config config_;
  PretrainedModel model_;
  std::vector<Example> examples_;
};

// The eval prompt is exactly the training sequence up to the target, for a
// tokenizer that adds BOS and for one that has a BOS id but does not add it
// (as SmolLM2: bos_token_id <|im_start|>, add_bos_token false).
TEST_F(EvaluatorTest, EvalPromptIdsArePrefixOfTrainingIdsWithAndWithoutBos) {
  PromptTemplate t;
  t.prompt = "Q {statement} A";
  t.target_l = " {label}";
  t.ethical_word = "ethical";
  t.unethical_word = "unethical";
  Example ex;
  ex.statement = "xy";
  ex.label = 1;
  for (bool add_bos : {true, false}) {
    CharTokenizer tok(add_bos);
    const auto prompt = PromptIds(tok, t, ex.statement);
    const TokenizedExample train = Tokenize(tok, Render(t, ex, Objective::kLabel), 0, 64);
    ASSERT_EQ(static_cast<int64_t>(prompt.size()), train.prompt_len) << "add_bos " << add_bos;
    EXPECT_TRUE(std::equal(prompt.begin(), prompt.end(), train.ids.begin())) << "add_bos " << add_bos;
    EXPECT_EQ(prompt.size(), add_bos ? 7u : 6u);
    EXPECT_EQ(prompt[0] == tok.bos_id(), add_bos);
    EXPECT_EQ(tok.Decode(prompt), "Q xy A");
  }
}

TEST_F(EvaluatorTest, GenerateIsBatchInvariantAndInOrder) {
  auto comm = MakeSingleCommunicator();
  config_.eval.batch_size = 1;
  const GatheredResults one = Evaluate(model_, config_, examples_, *comm);
  config_.eval.batch_size = 3;
  const GatheredResults three = Evaluate(model_, config_, examples_, *comm);
  ASSERT_EQ(one.results.size(), 7u);
  for (size_t i = 0; i < 7; ++i) {
    EXPECT_EQ(one.results[i].index, static_cast<int64_t>(i));
    EXPECT_EQ(one.results[i].statement, examples_[i].statement);
    EXPECT_EQ(one.results[i].generated, three.results[i].generated) << "example " << i;
    EXPECT_LE(one.results[i].generated_tokens, 5);
    EXPECT_EQ(one.results[i].prompt_tokens, static_cast<int64_t>(examples_[i].statement.size()) + 5);
  }
  EXPECT_EQ(one.ranks.size(), 1u);
  EXPECT_EQ(one.ranks[0].examples, 7);
  EXPECT_GT(one.ranks[0].generated_tokens, 0);
}

// Mean log p per token of " ethical" given the prompt, by an unbatched
// forward over the same ids.
double ReferenceLogLikelihood(PretrainedModel& m, const PromptTemplate& t, const Example& ex, int label) {
  Example e = ex;
  e.label = label;
  TokenizedExample te = Tokenize(*m.tokenizer, Render(t, e, Objective::kLabel), 0, 64);
  te.ids.pop_back();  // EOS is not scored.
  torch::NoGradGuard g;
  auto ids = torch::tensor(te.ids, torch::kInt).to(torch::kLong).unsqueeze(0);
  auto logp = torch::log_softmax(m.decoder->Logits(m.decoder->forward({ids})), -1)[0];
  double sum = 0;
  for (size_t t = static_cast<size_t>(te.prompt_len); t < te.ids.size(); ++t)
    sum += logp[static_cast<int64_t>(t) - 1][te.ids[t]].item<double>();
  return sum / static_cast<double>(te.ids.size() - static_cast<size_t>(te.prompt_len));
}

TEST_F(EvaluatorTest, LikelihoodMatchesAnUnbatchedReference) {
  auto comm = MakeSingleCommunicator();
  config_.eval.mode = "likelihood";
  config_.eval.batch_size = 4;
  const GatheredResults g = Evaluate(model_, config_, examples_, *comm);
  const PromptTemplate t = TemplateLibrary::Load(config_.prompt.templates_file).Find("tiny");
  for (size_t i = 0; i < examples_.size(); ++i) {
    const ExampleResult& r = g.results[i];
    // Right padding and batching change nothing beyond fp32 rounding.
    EXPECT_NEAR(r.logprob_ethical, ReferenceLogLikelihood(model_, t, examples_[i], 0), 1e-4);
    EXPECT_NEAR(r.logprob_unethical, ReferenceLogLikelihood(model_, t, examples_[i], 1), 1e-4);
    EXPECT_EQ(r.predicted, r.logprob_unethical > r.logprob_ethical ? 1 : 0);
    EXPECT_EQ(r.generated, r.predicted == 0 ? "ethical" : "unethical");
    EXPECT_TRUE(r.parsed());
  }
}

TEST_F(EvaluatorTest, RunEvaluationWritesTheReport) {
  auto comm = MakeSingleCommunicator();
  std::ofstream((dir_ / "test.csv").string()) << "Statement,Label,Reason\nfoo,0,ok\nbar,1,bad\nbaz,0,fine\n";
  config_.data.test = (dir_ / "test.csv").string();
  config_.eval.limit = 2;
  // The real sentence encoder judges the reasons, against a three-row bank.
  const bool encoder = std::filesystem::exists(config_.eval.encoder + "/model.safetensors");
  if (!encoder) config_.eval.encoder = "";  // Not fetched (scripts/fetch_encoder.sh): judging off.
  config_.eval.mar_bank = config_.data.test;
  config_.eval.mar_k = 1;
  const EvalReport r = RunEvaluation(model_, config_, "tiny-llama", "", *comm);
  EXPECT_EQ(r.n, 2);
  EXPECT_EQ(r.info.world_size, 1);
  EXPECT_EQ(RowLabel(r), "pre-trained");
  ASSERT_TRUE(r.reasons_all.has_value());
  EXPECT_EQ(r.reasons_all->judged, encoder);
  if (encoder) {
    // With k = 1 and the test rows in the bank, each human reason's nearest
    // is itself: the rule's ceiling is exactly 100%.
    ASSERT_TRUE(r.rule_ceiling.has_value());
    EXPECT_EQ(r.rule_ceiling->k, 2);
  }
  const EvalReport back = ReadReport(config_.eval.out_dir);
  EXPECT_EQ(back.n, 2);
  EXPECT_EQ(back.info.model, "tiny-llama");
}

TEST_F(EvaluatorTest, RejectsBadSettings) {
  auto comm = MakeSingleCommunicator();
  config_.eval.mode = "vibes";
  EXPECT_THROW(Evaluate(model_, config_, examples_, *comm), Error);
  config_.eval.mode = "generate";
  config_.eval.batch_size = 0;
  EXPECT_THROW(Evaluate(model_, config_, examples_, *comm), Error);
  config_.eval.batch_size = 2;
  model_.tokenizer = nullptr;
  EXPECT_THROW(Evaluate(model_, config_, examples_, *comm), Error);
}

TEST_F(EvaluatorTest, ALocalFailureIsRaisedThroughTheGather) {
  auto comm = MakeSingleCommunicator();
  examples_[3].statement = std::string(80, 'x');  // Beyond the fixture's 64-position context.
  try {
    Evaluate(model_, config_, examples_, *comm);
    FAIL() << "an over-long prompt was accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("eval: rank 0 failed:"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("context"), std::string::npos) << e.message();
  }
}

TEST(EvalOutDirTest, DefaultsUnderTheRunDir) {
  Config c;
  c.run.dir = "runs/x";
  EXPECT_EQ(EvalOutDir(c), "runs/x/eval");
  c.eval.out_dir = "elsewhere";
  EXPECT_EQ(EvalOutDir(c), "elsewhere");
}

}  // namespace
}  // namespace dfar
