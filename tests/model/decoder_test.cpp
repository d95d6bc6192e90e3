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
#include "dfar/runtime/placement.h"
#include "dfar/weights/safetensors.h"
#include "helpers/model_util.h"

namespace dfar {
namespace {

using testing::CausalLoss;
using testing::DropoutLoraGradients;
using testing::LongContextDecoder;
using testing::RelativeRms;
using testing::SparseMarkerIds;

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

// RoPE's inverse frequencies stay fp32 when the model is cast to bf16. A
// bf16 inv_freq (relative error up to 2^-9) turns the relative angle of a
// query and a key d slots apart by up to d * inv * 2^-9: ~0.3 rad for the
// second pair at d = 500, so attention across long distances moves. The
// input is one filler token with a distinct token every 37 slots, so each
// late query attends to keys hundreds of slots back.
// Tolerance: bf16 arithmetic alone (every activation rounded, u = 2^-9;
// ~40 roundings on a logit's path give u * sqrt(40) ~ 1.2e-2, somewhat
// amplified by the sharp attention) measured a relative RMS logit error of
// 1.75e-2 at positions 256..511; the old decoder, whose inv_freq was a
// registered buffer that to(bf16) rounded, measured 6.1e-2. The bound 3e-2
// sits between them with a margin of about 1.7x to each (both measured
// here, AVX-512 CPU, libtorch 1.13).
TEST(DecoderTest, Bf16LogitsAtLatePositionsMatchFp32) {
  const Bf16Probe probe = ProbeCpuBf16();
  if (!probe.bf16_error.empty()) GTEST_SKIP() << "this CPU and kernel setup has no bf16 GEMM: " << probe.bf16_error;
  Decoder ref = LongContextDecoder(), low = LongContextDecoder();
  low->to(torch::kBFloat16);
  torch::NoGradGuard no_grad;
  auto ids = SparseMarkerIds(512);
  auto want = ref->Logits(ref->forward({ids})).narrow(1, 256, 256);
  auto got = low->Logits(low->forward({ids})).narrow(1, 256, 256).to(torch::kFloat);
  const double early = RelativeRms(low->Logits(low->forward({ids.narrow(1, 0, 64)})).to(torch::kFloat),
                                   ref->Logits(ref->forward({ids.narrow(1, 0, 64)})));
  const double late = RelativeRms(got, want);
  EXPECT_LT(late, 3e-2) << "positions 256..511; positions 0..63 give " << early;
}

// Packed rows attend through per-sample spans (no dense mask): the hidden
// states of each sample equal a run of that sample alone, for fp32 (1e-5 abs:
// the same operations on the same values, up to blocking in the GEMMs) and
// through the dense-mask path too. GQA (4 heads, 2 KV heads) included.
TEST(DecoderTest, PackedSpanAttentionEqualsSeparateRunsAndTheDenseMask) {
  Decoder d = LongContextDecoder();
  torch::NoGradGuard no_grad;
  torch::manual_seed(6);
  const std::vector<int64_t> lengths = {5, 9, 4};
  std::vector<torch::Tensor> ids, seg, pos;
  std::vector<SegmentSpan> spans;
  int64_t at = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    ids.push_back(torch::randint(0, 96, {lengths[i]}, torch::kLong));
    seg.push_back(torch::full({lengths[i]}, static_cast<int64_t>(i + 1), torch::kLong));
    pos.push_back(torch::arange(lengths[i]));
    spans.push_back({0, at, lengths[i]});
    at += lengths[i];
  }
  const int64_t pad = 3;  // Trailing padding: segment 0, outside every span.
  auto row_ids = torch::cat({torch::cat(ids), torch::zeros({pad}, torch::kLong)}).unsqueeze(0);
  auto row_seg = torch::cat({torch::cat(seg), torch::zeros({pad}, torch::kLong)}).unsqueeze(0);
  auto row_pos = torch::cat({torch::cat(pos), torch::zeros({pad}, torch::kLong)}).unsqueeze(0);
  auto by_spans = d->forward({row_ids, row_pos, row_seg, spans});
  auto by_mask = d->forward({row_ids, row_pos, row_seg});
  at = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    auto alone = d->forward({ids[i].unsqueeze(0)});
    EXPECT_LE((by_spans.narrow(1, at, lengths[i]) - alone).abs().max().item<float>(), 1e-5f) << "sample " << i;
    at += lengths[i];
  }
  EXPECT_LE((by_spans.narrow(1, 0, at) - by_mask.narrow(1, 0, at)).abs().max().item<float>(), 1e-5f);
  EXPECT_TRUE(torch::isfinite(by_spans).all().item<bool>());
}

// Dropout inside a checkpointed block: the recompute in backward replays the
// forward's RNG, so with the same seed the gradients equal those of a run
// without checkpointing (bit for bit: the same kernels on the same values).
// Without the replay the recompute draws new masks and the LoRA gradients
// differ by O(1) of their size.
TEST(DecoderTest, CheckpointedDropoutGivesTheGradientsOfTheLoss) {
  const std::vector<std::vector<torch::Tensor>> grads = {DropoutLoraGradients(false, torch::kCPU),
                                                         DropoutLoraGradients(true, torch::kCPU)};
  ASSERT_EQ(grads[0].size(), grads[1].size());
  ASSERT_FALSE(grads[0].empty());
  for (size_t i = 0; i < grads[0].size(); ++i)
    EXPECT_LE((grads[0][i] - grads[1][i]).abs().max().item<float>(),
              1e-6f * (1 + grads[0][i].abs().max().item<float>()))
        << "trainable tensor " << i;
}

// Parameters created where a loader puts them: the requested dtype, no init
// run (the loader writes every one), and the RoPE table still fp32.
TEST(DecoderTest, ParametersAreCreatedInTheRequestedDtype) {
  ModelConfig c = LongContextDecoder()->config();
  Decoder d(c, ParameterPlacement{torch::TensorOptions().dtype(torch::kBFloat16), false});
  for (const auto& p : d->named_parameters()) EXPECT_EQ(p.value().scalar_type(), torch::kBFloat16) << p.key();
  ModelSection section;
  section.path = FixtureDir("tiny-spm");
  section.init = "random";
  const PretrainedModel fp32 = LoadBaseModel(section, 7);
  const PretrainedModel bf16 = LoadBaseModel(section, 7, {torch::TensorOptions().dtype(torch::kBFloat16), false});
  auto p32 = fp32.decoder->named_parameters();
  for (const auto& p : bf16.decoder->named_parameters()) {
    EXPECT_EQ(p.value().scalar_type(), torch::kBFloat16) << p.key();
    // The same draws, rounded once: what a cast of the fp32 model gives.
    EXPECT_TRUE(torch::equal(p.value(), p32[p.key()].to(torch::kBFloat16))) << p.key();
  }
}

}  // namespace
}  // namespace dfar
