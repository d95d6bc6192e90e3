// ExportHfModel: an exported directory reloads (through LoadPretrained's HF
// path) to the same logits as the model that was exported: the tiny fixture
// with randomised LoRA adapters merged in, sharded and unsharded, and the real
// SmolLM2 GGUF (when cached) whose exported tokenizer.json must encode like
// the GGUF tokenizer. Tolerance 1e-5 abs: the export writes the very fp32
// values the model holds, so the reloaded model computes the same numbers.
//
// With env DFAR_EXPORT_DUMP=DIR the exports are kept in DIR/tiny and
// DIR/smollm2, with DIR/{tiny,smollm2}.json holding the prompt, its ids and
// dfar's logits, for tools/check_export.py to compare against transformers.
#include "dfar/model/export.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "dfar/core/error.h"
#include "dfar/data/bpe_tokenizer.h"
#include "dfar/weights/gguf.h"
#include "dfar/weights/safetensors.h"

namespace dfar {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string TinyDir() {
  return std::string(DFAR_SOURCE_DIR) + "/tests/fixtures/models/tiny-spm";
}

std::string SmolLM2Path() {
  const char* cache = std::getenv("DFAR_CACHE");
  const std::string root = cache != nullptr && *cache != '\0' ? cache : std::string(DFAR_SOURCE_DIR) + "/.cache";
  return root + "/models/smollm2-135m-instruct.gguf";
}

std::string DumpDir() {
  const char* dir = std::getenv("DFAR_EXPORT_DUMP");
  return dir != nullptr ? dir : "";
}

// A fresh directory under the test's temp dir (removed by the fixture).
class ExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / ("dfar-export-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  // Where an export named `name` goes: kept in DFAR_EXPORT_DUMP when set.
  fs::path ExportDir(const std::string& name) const {
    if (DumpDir().empty()) return root_ / name;
    fs::remove_all(fs::path(DumpDir()) / name);
    fs::create_directories(DumpDir());
    return fs::path(DumpDir()) / name;
  }
  fs::path root_;
};

torch::Tensor AllLogits(Decoder& d, const std::vector<int32_t>& ids) {
  torch::NoGradGuard no_grad;
  auto t = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kLong).unsqueeze(0);
  return d->Logits(d->forward({t}))[0];
}

float MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<float>();
}

void DumpLogits(const std::string& name, const std::string& prompt, const std::vector<int32_t>& text_ids,
                const std::vector<int32_t>& ids, const torch::Tensor& logits) {
  if (DumpDir().empty()) return;
  json rows = json::array();
  for (int64_t i = 0; i < logits.size(0); ++i) {
    auto row = logits[i].contiguous();
    rows.push_back(std::vector<float>(row.data_ptr<float>(), row.data_ptr<float>() + row.numel()));
  }
  json j = {{"prompt", prompt}, {"text_ids", text_ids}, {"ids", ids}, {"logits", rows}};
  std::ofstream(fs::path(DumpDir()) / (name + ".json")) << j.dump();
}

// The tiny fixture with LoRA on every projection and non-zero B, so that the
// adapters change the logits and merging them matters.
PretrainedModel TinyWithLora() {
  PretrainedModel m = LoadPretrained(TinyDir());
  m.decoder->EnableLora({"q", "k", "v", "o", "gate", "up", "down"}, 4, 8.0, 0.0);
  torch::manual_seed(7);
  torch::NoGradGuard no_grad;
  for (auto& p : m.decoder->named_parameters())
    if (p.key().find("lora_b") != std::string::npos) p.value().normal_(0.0, 0.05);
  return m;
}

std::vector<int32_t> WithBos(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::vector<int32_t> out;
  if (tok.add_bos()) out.push_back(tok.bos_id());
  out.insert(out.end(), ids.begin(), ids.end());
  return out;
}

TEST_F(ExportTest, TinyLoraMergedReloadsToSameLogits) {
  PretrainedModel base = LoadPretrained(TinyDir());
  PretrainedModel m = TinyWithLora();
  const std::string prompt = "The statement is ethical because";
  const std::vector<int32_t> text_ids = m.tokenizer->Encode(prompt);
  const std::vector<int32_t> ids = WithBos(*m.tokenizer, text_ids);
  const torch::Tensor with_adapters = AllLogits(m.decoder, ids);
  ASSERT_GT(MaxAbsDiff(with_adapters, AllLogits(base.decoder, ids)), 1e-3f) << "LoRA had no effect";

  const fs::path out = ExportDir("tiny");
  ExportHfModel(m, out.string());
  const torch::Tensor merged = AllLogits(m.decoder, ids);
  EXPECT_LE(MaxAbsDiff(merged, with_adapters), 1e-4f);  // Merging only reorders fp32 sums.
  DumpLogits("tiny", prompt, text_ids, ids, merged);

  PretrainedModel reloaded = LoadPretrained(out.string());
  EXPECT_LE(MaxAbsDiff(AllLogits(reloaded.decoder, ids), merged), 1e-5f);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.model"}) EXPECT_TRUE(fs::exists(out / f)) << f;
  EXPECT_FALSE(fs::exists(out.string() + ".tmp"));
  ASSERT_NE(reloaded.tokenizer, nullptr);
  EXPECT_EQ(reloaded.tokenizer->Encode(prompt), text_ids);
}

TEST_F(ExportTest, WritesOnlyHfNamedF32TensorsAndNoLmHeadWhenTied) {
  PretrainedModel m = TinyWithLora();
  const fs::path out = root_ / "out";
  ExportHfModel(m, out.string());
  auto file = SafetensorsFile::Open((out / "model.safetensors").string());
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_EQ(file->tensors().count("lm_head.weight"), 0u);
  EXPECT_EQ(file->tensors().count("model.embed_tokens.weight"), 1u);
  for (const auto& [name, info] : file->tensors()) {
    EXPECT_EQ(name.find("lora"), std::string::npos) << name;
    EXPECT_EQ(info.dtype, "F32") << name;
  }
  std::ifstream in(out / "config.json");
  const json config = json::parse(in);
  EXPECT_EQ(config.at("torch_dtype"), "float32");
  EXPECT_EQ(config.at("tie_word_embeddings"), true);
}

TEST_F(ExportTest, ShardsAboveTheLimitIntoAnEmptyDirAndReplacesAStaleTmp) {
  PretrainedModel m = TinyWithLora();
  const fs::path out = root_ / "sharded";
  fs::create_directories(out);                    // Empty: accepted.
  fs::create_directories(root_ / "sharded.tmp");  // Stale: replaced.
  std::ofstream(root_ / "sharded.tmp" / "junk") << "x";
  ExportOptions options;
  options.max_shard_bytes = 64 * 1024;
  ExportHfModel(m, out.string() + "/", options);  // A trailing slash names the same directory.
  EXPECT_FALSE(fs::exists(root_ / "sharded.tmp"));
  EXPECT_FALSE(fs::exists(out / "model.safetensors"));
  EXPECT_FALSE(fs::exists(out / "junk"));
  std::ifstream in(out / "model.safetensors.index.json");
  const json index = json::parse(in);
  std::set<std::string> files;
  for (const auto& [name, file] : index.at("weight_map").items()) files.insert(file.get<std::string>());
  ASSERT_GT(files.size(), 1u);
  EXPECT_EQ(*files.begin(), "model-00001-of-0000" + std::to_string(files.size()) + ".safetensors");
  const std::vector<int32_t> ids = {1, 5, 9, 77, 300, 2};
  PretrainedModel reloaded = LoadPretrained(out.string());
  EXPECT_LE(MaxAbsDiff(AllLogits(reloaded.decoder, ids), AllLogits(m.decoder, ids)), 1e-5f);
}

TEST_F(ExportTest, RefusesANonEmptyDirectory) {
  PretrainedModel m = LoadPretrained(TinyDir());
  const fs::path out = root_ / "taken";
  fs::create_directories(out);
  std::ofstream(out / "keep.txt") << "mine";
  try {
    ExportHfModel(m, out.string());
    FAIL() << "export into a non-empty directory succeeded";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("not empty"), std::string::npos) << e.message();
  }
  EXPECT_TRUE(fs::exists(out / "keep.txt"));
  EXPECT_FALSE(fs::exists(out / "config.json"));
  EXPECT_FALSE(fs::exists(out.string() + ".tmp"));
}

TEST_F(ExportTest, AFailureHalfwayLeavesNeitherTheExportNorItsTmp) {
  PretrainedModel m = LoadPretrained(TinyDir());
  m.format = "gguf";  // The tokenizer step, after the weights, then fails to read a GGUF.
  m.source = TinyDir() + "/config.json";
  const fs::path out = root_ / "failed";
  EXPECT_THROW(ExportHfModel(m, out.string()), Error);
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out.string() + ".tmp"));
}

TEST_F(ExportTest, MergedTwiceIsMergedOnce) {
  PretrainedModel m = TinyWithLora();
  const std::vector<int32_t> ids = {1, 5, 9, 77};
  ExportHfModel(m, (root_ / "a").string());
  const torch::Tensor after_first = AllLogits(m.decoder, ids);
  ExportHfModel(m, (root_ / "b").string());  // Already merged: must not add B A again.
  EXPECT_LE(MaxAbsDiff(AllLogits(m.decoder, ids), after_first), 0.0f);
}

// ---------------------------------------------------------------------------
// SmolLM2 from GGUF: weights and a generated tokenizer.json.

json TokenizerGolden() {
  std::ifstream in(std::string(DFAR_SOURCE_DIR) + "/tests/fixtures/tokenizer/smollm2_golden.json");
  return json::parse(in);
}

TEST_F(ExportTest, SmolLM2GgufExportEncodesAndComputesLikeTheGguf) {
  const std::string gguf = SmolLM2Path();
  if (!fs::exists(gguf)) GTEST_SKIP() << gguf << " is absent; run scripts/fetch_model.sh";
  PretrainedModel m = LoadPretrained(gguf);
  const fs::path out = ExportDir("smollm2");
  ExportHfModel(m, out.string());
  EXPECT_FALSE(fs::exists(out.string() + ".tmp"));

  auto exported = LoadBpeTokenizerFromHfJson((out / "tokenizer.json").string());
  int wrong = 0;
  for (const json& c : TokenizerGolden().at("cases")) {
    const std::string text = c.at("text").get<std::string>();
    const bool same = exported->Encode(text) == m.tokenizer->Encode(text);
    wrong += same ? 0 : 1;
    EXPECT_TRUE(same) << "text: " << json(text).dump();
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(exported->bos_id(), m.tokenizer->bos_id());
  EXPECT_EQ(exported->eos_id(), m.tokenizer->eos_id());
  EXPECT_EQ(exported->pad_id(), m.tokenizer->pad_id());
  EXPECT_EQ(exported->add_bos(), m.tokenizer->add_bos());
  std::ifstream config_in(out / "tokenizer_config.json");
  const json config = json::parse(config_in);
  EXPECT_EQ(config.contains("chat_template"), GgufFile::Open(gguf).Has("tokenizer.chat_template"));

  const std::string prompt = "<|im_start|>user\nIs it ethical to return a lost wallet?<|im_end|>\n";
  const std::vector<int32_t> text_ids = m.tokenizer->Encode(prompt);
  const std::vector<int32_t> ids = WithBos(*m.tokenizer, text_ids);
  const torch::Tensor want = AllLogits(m.decoder, ids);
  DumpLogits("smollm2", prompt, text_ids, ids, want);
  PretrainedModel reloaded = LoadPretrained(out.string());
  EXPECT_EQ(reloaded.tokenizer->Encode(prompt), text_ids);
  EXPECT_LE(MaxAbsDiff(AllLogits(reloaded.decoder, ids), want), 1e-5f);
}

}  // namespace
}  // namespace dfar
