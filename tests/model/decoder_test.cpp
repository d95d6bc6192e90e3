// The decoder against transformers' fp32 outputs (tests/fixtures/models,
// made by tools/make_model_golden.py), and its internal equivalences.
// Tolerance 1e-4 abs: fp32 with a different reduction order (the fixtures'
// own README measured 2e-6 between two independent implementations).
#include <gtest/gtest.h>

#include <cstring>

#include "dfar/core/error.h"
#include "dfar/model/decoder.h"
#include "dfar/model/name_adapter.h"
#include "dfar/model/pretrained.h"
#include "dfar/weights/safetensors.h"

namespace dfar {
namespace {

std::string FixtureDir(const std::string& name) {
  return std::string(DFAR_SOURCE_DIR) + "/tests/fixtures/models/" + name;
}

struct Golden {
  torch::Tensor input_ids, logits, loss;
  std::shared_ptr<SafetensorsFile> file;
};

Golden ReadGolden(const std::string& name) {
  Golden g;
  g.file = SafetensorsFile::Open(FixtureDir(name) + "/golden.safetensors");
  const auto& ids = g.file->tensors().at("input_ids");
  g.input_ids = torch::from_blob(const_cast<uint8_t*>(g.file->Data(ids)), ids.shape, torch::kLong).clone();
  const auto& lg = g.file->tensors().at("logits");
  g.logits = torch::tensor(g.file->ToFloat("logits")).view(lg.shape);
  g.loss = torch::tensor(g.file->ToFloat("loss"));
  return g;
}

torch::Tensor CausalLoss(Decoder& d, const torch::Tensor& ids) {
  auto hidden = d->forward({ids});
  auto logits = d->Logits(hidden).narrow(1, 0, ids.size(1) - 1);
  auto target = ids.narrow(1, 1, ids.size(1) - 1);
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), target.reshape({-1}));
}

class DecoderGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DecoderGoldenTest, LogitsLossAndGradientsMatchTransformers) {
  auto model = LoadPretrained(FixtureDir(GetParam()), /*with_tokenizer=*/false);
  const Golden g = ReadGolden(GetParam());
  auto logits = model.decoder->Logits(model.decoder->forward({g.input_ids}));
  EXPECT_LE((logits - g.logits).abs().max().item<float>(), 1e-4f);
  auto loss = CausalLoss(model.decoder, g.input_ids);
  EXPECT_NEAR(loss.item<float>(), g.loss.item<float>(), 1e-5f);
  loss.backward();
  int checked = 0;
  for (const auto& [name, info] : g.file->tensors()) {
    if (name.rfind("grad.", 0) != 0) continue;
    const std::string hf = name.substr(5);
    const auto want = torch::tensor(g.file->ToFloat(name)).view(info.shape);
    torch::Tensor got;
    for (const auto& p : model.decoder->named_parameters())
      if (HfNameFromDfar(p.key()) == hf) got = p.value().grad();
    ASSERT_TRUE(got.defined()) << hf;
    EXPECT_LE((got - want).abs().max().item<float>(), 1e-4f) << hf;
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(model.decoder->parameters().size()));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DecoderGoldenTest, ::testing::Values("llama", "llama3", "mistral", "qwen2"));

TEST(DecoderTest, MathKernelEqualsSdpaAndSegmentsEqualSeparateRuns) {
  auto model = LoadPretrained(FixtureDir("mistral"), false);
  auto& d = model.decoder;
  torch::NoGradGuard no_grad;
  auto ids = ReadGolden("mistral").input_ids;
  auto a = d->forward({ids});
  d->set_attention_kernel(AttentionKernel::kMath);
  auto b = d->forward({ids});
  EXPECT_LE((a - b).abs().max().item<float>(), 1e-5f);
  // Pack row 0's first 5 and row 1's first 7 tokens into one row of 12.
  auto packed = torch::cat({ids[0].narrow(0, 0, 5), ids[1].narrow(0, 0, 7)}).unsqueeze(0);
  auto seg = torch::cat({torch::full({5}, 1, torch::kLong), torch::full({7}, 2, torch::kLong)}).unsqueeze(0);
  auto pos = torch::cat({torch::arange(5), torch::arange(7)}).unsqueeze(0);
  d->set_attention_kernel(AttentionKernel::kSdpa);
  auto hp = d->forward({packed, pos, seg});
  auto h0 = d->forward({ids[0].narrow(0, 0, 5).unsqueeze(0)});
  auto h1 = d->forward({ids[1].narrow(0, 0, 7).unsqueeze(0)});
  EXPECT_LE((hp.narrow(1, 0, 5) - h0).abs().max().item<float>(), 1e-5f);
  EXPECT_LE((hp.narrow(1, 5, 7) - h1).abs().max().item<float>(), 1e-5f);
}

TEST(DecoderTest, KvCacheIncrementalEqualsFullForward) {
  for (const std::string name : {"llama", "mistral"}) {
    auto model = LoadPretrained(FixtureDir(name), false);
    torch::NoGradGuard no_grad;
    auto ids = ReadGolden(name).input_ids;
    auto full = model.decoder->forward({ids});
    KvCache cache = model.decoder->NewCache(ids.size(0), ids.size(1));
    auto first = model.decoder->forward({ids.narrow(1, 0, 7)}, &cache);
    std::vector<torch::Tensor> parts = {first};
    for (int64_t t = 7; t < ids.size(1); ++t) parts.push_back(model.decoder->forward({ids.narrow(1, t, 1)}, &cache));
    EXPECT_LE((torch::cat(parts, 1) - full).abs().max().item<float>(), 1e-5f) << name;
  }
}

TEST(DecoderTest, ActivationCheckpointingGivesIdenticalGradients) {
  auto a = LoadPretrained(FixtureDir("llama"), false).decoder;
  auto b = LoadPretrained(FixtureDir("llama"), false).decoder;
  b->set_activation_checkpointing(true);
  auto ids = ReadGolden("llama").input_ids;
  CausalLoss(a, ids).backward();
  CausalLoss(b, ids).backward();
  auto pa = a->parameters(), pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i].grad(), pb[i].grad())) << i;
}

TEST(DecoderTest, LoraWithZeroBIsIdentityAndMergeEqualsUnmerged) {
  auto model = LoadPretrained(FixtureDir("qwen2"), false);
  auto& d = model.decoder;
  auto ids = ReadGolden("qwen2").input_ids;
  d->eval();
  torch::NoGradGuard no_grad;
  auto base = d->Logits(d->forward({ids}));
  d->EnableLora({"q", "k", "v", "o", "gate", "up", "down"}, 4, 8.0, 0.1);
  EXPECT_TRUE(torch::equal(d->Logits(d->forward({ids})), base));
  for (auto& p : d->named_parameters())
    if (p.key().find("lora_b") != std::string::npos) p.value().normal_(0, 0.05);
  auto unmerged = d->Logits(d->forward({ids}));
  EXPECT_GT((unmerged - base).abs().max().item<float>(), 1e-3f);
  d->MergeLora();
  EXPECT_LE((d->Logits(d->forward({ids})) - unmerged).abs().max().item<float>(), 1e-5f);
  d->UnmergeLora();
  EXPECT_LE((d->Logits(d->forward({ids})) - unmerged).abs().max().item<float>(), 1e-5f);
}

TEST(DecoderTest, LoraFreezesBaseAndTrainsOnlyAdapters) {
  auto d = LoadPretrained(FixtureDir("llama"), false).decoder;
  d->EnableLora({"q", "v"}, 2, 4.0, 0.0);
  int trainable = 0;
  for (const auto& p : d->named_parameters()) {
    const bool lora = p.key().find("lora_") != std::string::npos;
    EXPECT_EQ(p.value().requires_grad(), lora) << p.key();
    trainable += lora;
  }
  EXPECT_EQ(trainable, 2 * 2 * 2);  // 2 layers x {q, v} x {A, B}.
}

TEST(DecoderTest, WrongShapeNamesTensorAndShapes) {
  ModelConfig c = ModelConfigFromHfJson(FixtureDir("llama") + "/config.json");
  c.intermediate_size = 48;
  Decoder d(c);
  try {
    AssignParameter(d, "layers.0.mlp.up.weight", "model.layers.0.mlp.up_proj.weight", {64, 32},
                    std::vector<float>(64 * 32), "model.safetensors");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.layers.0.mlp.up_proj.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[64, 32]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[48, 32]"), std::string::npos) << msg;
  }
}

// model.init random: the config and tokenizer of a model directory, weights
// drawn like HF's init from the seed. The tiny-spm fixture's weight file is
// never read (its config is used with the seed's weights instead).
TEST(DecoderTest, RandomInitIsSeededHfStyleAndLoadsTheTokenizer) {
  ModelSection section;
  section.path = FixtureDir("tiny-spm");
  section.init = "random";
  const PretrainedModel a = LoadBaseModel(section, 7), b = LoadBaseModel(section, 7), c = LoadBaseModel(section, 8);
  ASSERT_NE(a.tokenizer, nullptr);
  const PretrainedModel loaded = LoadPretrained(section.path);
  auto pa = a.decoder->named_parameters(), pb = b.decoder->named_parameters(), pc = c.decoder->named_parameters();
  auto pl = loaded.decoder->named_parameters();
  for (const auto& p : pa) {
    const torch::Tensor& w = p.value();
    EXPECT_TRUE(torch::equal(w, pb[p.key()])) << p.key() << " differs for the same seed";
    if (p.key().find("norm") != std::string::npos) {
      EXPECT_TRUE(torch::all(w == 1).item<bool>()) << p.key();
      continue;
    }
    EXPECT_FALSE(torch::equal(w, pc[p.key()])) << p.key() << " is the same for another seed";
    EXPECT_FALSE(torch::equal(w, pl[p.key()])) << p.key() << " came from the weight file";
    // N(0, 0.02) over >= 2048 draws (the k and v projections, 32 x 64): the
    // sample std's relative standard error is 1/sqrt(2n) <= 1.6%, so 10% is
    // over 6 standard errors.
    EXPECT_NEAR(w.std().item<double>(), 0.02, 0.002) << p.key();
  }
}

}  // namespace
}  // namespace dfar
