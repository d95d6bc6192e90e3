// The real SmolLM2-135M-Instruct GGUF through dfar (LoadPretrained: GGUF
// dequantisation, Q/K un-permutation, tied head; the BPE tokenizer; the
// decoder; Generate with its KV cache) against Hugging Face transformers 4.44.2
// loading the same file (tests/fixtures/models/smollm2_golden.safetensors, made
// by tools/make_smollm2_golden.py; versions and settings in its "generator"
// metadata). Skipped when scripts/fetch_model.sh has not cached the model.
//
// Prompt: the llama2 template for the first DFAR test statement, 38 tokens.
// Logits: the last 4 prompt positions, |logit| up to 21.7; measured max
// |dfar - transformers| = 4.4e-5 (fp32, CPU, libtorch 1.13.1). Tolerance 1e-3 abs.
// Greedy: on this prompt the first greedy token is <|im_end|> = EOS (top-2
// margin 0.106), so plain Generate stops at once, as transformers does; the
// 20-token comparison runs with EOS hidden from Generate (transformers'
// eos_token_id=None). Its smallest top-2 margin is 0.106, far above the 1e-3
// agreement, so a tie cannot flip a token.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "dfar/data/collate.h"
#include "dfar/data/csv.h"
#include "dfar/data/prompt_template.h"
#include "dfar/data/tokenizer.h"
#include "dfar/model/generate.h"
#include "dfar/model/pretrained.h"
#include "dfar/weights/safetensors.h"
#include "helpers/tokenizer_util.h"

namespace dfar {
namespace {

namespace fs = std::filesystem;

std::string GgufPath() {
  const char* cache = std::getenv("DFAR_CACHE");
  const std::string root = cache != nullptr && *cache != '\0' ? cache : std::string(DFAR_SOURCE_DIR) + "/.cache";
  return root + "/models/smollm2-135m-instruct.gguf";
}

std::vector<int64_t> ReadIds(const SafetensorsFile& f, const std::string& name) {
  const SafetensorInfo& info = f.tensors().at(name);
  EXPECT_EQ(info.dtype, "I64") << name;
  EXPECT_EQ(info.shape.size(), 1u) << name;
  const auto* p = reinterpret_cast<const int64_t*>(f.Data(info));
  return std::vector<int64_t>(p, p + (info.end - info.begin) / sizeof(int64_t));
}

std::vector<int64_t> Widen(const std::vector<int32_t>& ids) {
  return std::vector<int64_t>(ids.begin(), ids.end());
}

TEST(SmolLM2GoldenTest, LogitsAndGreedyTokensMatchTransformers) {
  const std::string gguf = GgufPath();
  if (!fs::exists(gguf)) GTEST_SKIP() << gguf << " is absent; run scripts/fetch_model.sh";
  const auto golden =
      SafetensorsFile::Open(std::string(DFAR_SOURCE_DIR) + "/tests/fixtures/models/smollm2_golden.safetensors");
  const auto meta = nlohmann::json::parse(golden->metadata().at("generator"));
  ASSERT_EQ(static_cast<uint64_t>(fs::file_size(gguf)), meta.at("gguf_bytes").get<uint64_t>())
      << gguf << " is not the file the fixture was made from (sha256 " << meta.at("gguf_sha256").get<std::string>()
      << ")";

  // The prompt, rendered by dfar, and its ids from dfar's tokenizer.
  const std::string statement = meta.at("statement").get<std::string>();
  const std::string test_csv = DFAR_SHARED_DIR "/data/dfar/DFAR_testset.csv";
  if (fs::exists(test_csv)) {
    const CsvTable t = ReadCsv(test_csv);
    ASSERT_FALSE(t.rows.empty());
    EXPECT_EQ(t.rows[0].fields[t.Column("Statement")], statement);
  }
  const auto templates = TemplateLibrary::Load(std::string(DFAR_SOURCE_DIR) + "/configs/templates.yaml");
  const std::string prompt = RenderPrompt(templates.Find("llama2"), statement);
  EXPECT_EQ(prompt, meta.at("prompt").get<std::string>());

  PretrainedModel model = LoadPretrained(gguf);
  ASSERT_TRUE(model.tokenizer);
  const Tokenizer& tok = *model.tokenizer;
  EXPECT_FALSE(tok.add_bos());
  const std::vector<int32_t> ids = tok.Encode(prompt);
  const std::vector<int64_t> want_ids = ReadIds(*golden, "input_ids");
  ASSERT_EQ(Widen(ids), want_ids);
  const int64_t n = static_cast<int64_t>(ids.size());

  // Logits at the stored positions, fp32.
  Decoder& d = model.decoder;
  d->eval();
  torch::NoGradGuard no_grad;
  ASSERT_EQ(d->embed->weight.scalar_type(), torch::kFloat);
  const torch::Tensor input = torch::tensor(want_ids, torch::kLong).view({1, n});
  const torch::Tensor logits = d->Logits(d->forward({input}))[0];
  const std::vector<int64_t> pos = ReadIds(*golden, "logit_pos");
  const auto& info = golden->tensors().at("logits");
  const torch::Tensor want = torch::tensor(golden->ToFloat("logits")).view(info.shape);
  ASSERT_EQ(want.size(0), static_cast<int64_t>(pos.size()));
  ASSERT_EQ(want.size(1), logits.size(1));
  const torch::Tensor got = logits.index_select(0, torch::tensor(pos, torch::kLong));
  const float diff = (got - want).abs().max().item<float>();
  std::printf("SmolLM2 golden: max |logit diff| = %.3g over %zu positions (max |logit| %.1f)\n", diff, pos.size(),
              want.abs().max().item<float>());
  EXPECT_LE(diff, 1e-3f);
  EXPECT_TRUE(torch::equal(got.argmax(-1), want.argmax(-1)));

  // Greedy generation, stopping at EOS: transformers' tokens up to its EOS.
  GenerationOptions opts;
  opts.max_new_tokens = 20;
  opts.temperature = 0.0;
  std::vector<int64_t> stopped = ReadIds(*golden, "greedy_ids");
  const bool hit_eos = !stopped.empty() && stopped.back() == tok.eos_id();
  if (hit_eos) stopped.pop_back();
  const Generation g = Generate(d, tok, {ids}, opts)[0];
  EXPECT_EQ(Widen(g.ids), stopped) << g.text;
  EXPECT_EQ(g.stop_reason, hit_eos ? "eos" : "length");

  // All 20 greedy tokens, EOS not stopping either side.
  const testing::EosOverride no_eos(tok, -1);  // EOS hidden: all max_new_tokens steps run.
  const Generation free = Generate(d, no_eos, {ids}, opts)[0];
  EXPECT_EQ(free.stop_reason, "length");
  const std::vector<int64_t> want_free = ReadIds(*golden, "greedy_ids_no_eos");
  ASSERT_EQ(want_free.size(), 20u);
  EXPECT_EQ(Widen(free.ids), want_free) << free.text;
}

// The one prompt recipe with the real SmolLM2 tokenizer, which has a BOS id
// (<|im_start|> = 1) but does not add it: the ids that the evaluator
// prompts with are exactly the training ids up to the target, for both
// objectives and every template, and neither starts with BOS.
TEST(SmolLM2GoldenTest, EvalPromptIsTheTrainingPrefixWithTheRealTokenizer) {
  const std::string gguf = GgufPath();
  if (!fs::exists(gguf)) GTEST_SKIP() << gguf << " is absent; run scripts/fetch_model.sh";
  PretrainedModel model = LoadPretrained(gguf);
  ASSERT_TRUE(model.tokenizer);
  const Tokenizer& tok = *model.tokenizer;
  ASSERT_GE(tok.bos_id(), 0);
  ASSERT_FALSE(tok.add_bos());
  const auto templates = TemplateLibrary::Load(std::string(DFAR_SOURCE_DIR) + "/configs/templates.yaml");
  Example ex;
  ex.statement = "I told my friend the truth even though it hurt.";
  ex.label = 0;
  ex.reason = "Honesty respects the friend.";
  for (const std::string name : {"llama2", "mistral", "chatml"}) {
    const PromptTemplate& tmpl = templates.Find(name);
    const std::vector<int32_t> prompt = PromptIds(tok, tmpl, ex.statement);
    // No BOS is added: the ids are the prompt text's own (chatml's text
    // itself starts with <|im_start|>, which is also the BOS id).
    EXPECT_EQ(prompt, tok.Encode(RenderPrompt(tmpl, ex.statement))) << name;
    for (Objective objective : {Objective::kLabel, Objective::kLabelReason}) {
      const TokenizedExample train = Tokenize(tok, Render(tmpl, ex, objective), 0, 512);
      ASSERT_EQ(static_cast<int64_t>(prompt.size()), train.prompt_len) << name;
      EXPECT_TRUE(std::equal(prompt.begin(), prompt.end(), train.ids.begin())) << name;
    }
  }
}

}  // namespace
}  // namespace dfar
