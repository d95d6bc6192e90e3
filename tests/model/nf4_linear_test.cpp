// QLoRA's NF4 base on the device path (model/nf4_linear.h): the tensor-op
// dequantisation against the reference quantiser's (weights/nf4.h, itself
// checked against bitsandbytes), the matmul and its input gradient, the
// Proj integration (forward, LoRA merge), and a QLoRA step on SmolLM2.
#include "dfar/model/nf4_linear.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "dfar/model/decoder.h"
#include "dfar/model/pretrained.h"
#include "dfar/train/loss.h"
#include "dfar/train/step_engine.h"
#include "dfar/weights/nf4.h"
#include "helpers/model_util.h"

namespace dfar {
namespace {

// An odd element count whose last block is partial (577 x 33 = 19041 =
// 297 blocks of 64 + 33), with an all-zero block and an outlier.
torch::Tensor OddWeight() {
  torch::manual_seed(11);
  auto w = torch::randn({577, 33}) * 0.02;
  w.view(-1).narrow(0, 640, 64).zero_();
  w.view(-1)[5000] = 0.9;
  return w;
}

// The same fp32 operations in the same order as the reference: equal bits.
TEST(Nf4LinearTest, DequantisationEqualsTheReference) {
  const auto w = OddWeight();
  const auto q = QuantizeNf4Weight(w);
  const auto flat = w.reshape({-1}).contiguous();
  const Nf4Quantized ref = QuantizeNf4(flat.data_ptr<float>(), flat.numel());
  std::vector<float> want(static_cast<size_t>(flat.numel()));
  DequantizeNf4(ref, want.data());
  const auto got = DequantizeNf4Weight(*q, torch::kFloat).reshape({-1}).contiguous();
  ASSERT_EQ(got.numel(), flat.numel());
  const auto want_t = torch::from_blob(want.data(), {flat.numel()}, torch::kFloat);
  EXPECT_TRUE(torch::equal(got, want_t)) << "max diff " << (got - want_t).abs().max().item<double>();
  EXPECT_EQ(DequantizeNf4Weight(*q, torch::kFloat).sizes(), w.sizes());
  // Storage: 4 bits per weight plus the constants, as the reference counts it.
  EXPECT_NEAR(8.0 * static_cast<double>(q->bytes()) / static_cast<double>(w.numel()), Nf4BitsPerParameter(w.numel()),
              1e-9);
}

// Forward and input gradient equal a dense linear layer with the
// dequantised weight (the same matmuls: 1e-6 relative for fp32 GEMMs that
// may block differently), and the weight receives no gradient.
TEST(Nf4LinearTest, MatmulAndInputGradientEqualDenseWithTheDequantisedWeight) {
  const auto w = OddWeight();
  const auto q = QuantizeNf4Weight(w);
  const auto dense = DequantizeNf4Weight(*q, torch::kFloat);
  auto x1 = torch::randn({3, 5, 33}).set_requires_grad(true);
  auto x2 = x1.detach().clone().set_requires_grad(true);
  auto y1 = Nf4Linear(x1, q), y2 = torch::nn::functional::linear(x2, dense);
  EXPECT_TRUE(torch::allclose(y1, y2, 1e-6, 1e-7));
  const auto g = torch::randn(y1.sizes());
  (y1 * g).sum().backward();
  (y2 * g).sum().backward();
  EXPECT_TRUE(torch::allclose(x1.grad(), x2.grad(), 1e-6, 1e-7));
}

// A projection quantised after LoRA is enabled computes with the NF4 weight
// and merges its adapters into the dequantised weight.
TEST(Nf4LinearTest, ProjectionQuantisesItsFrozenWeightAndMergesLora) {
  torch::manual_seed(3);
  Proj p(64, 48, false);
  p->EnableLora(4, 8.0, 0.0);
  torch::NoGradGuard no_grad;
  p->lora_b.normal_(0, 0.1);
  p->QuantizeNf4();
  ASSERT_TRUE(p->nf4 != nullptr);
  EXPECT_EQ(p->weight.numel(), 0);
  const auto x = torch::randn({2, 64});
  const auto dense = DequantizeNf4Weight(*p->nf4, torch::kFloat);
  const auto want = torch::nn::functional::linear(x, dense + torch::matmul(p->lora_b, p->lora_a) * p->lora_scale);
  const auto before = p->forward(x);
  EXPECT_TRUE(torch::allclose(before, want, 1e-5, 1e-6));
  p->MergeLora();
  EXPECT_TRUE(p->nf4 == nullptr);
  EXPECT_TRUE(torch::allclose(p->forward(x), want, 1e-5, 1e-6));
}

TEST(Nf4LinearTest, OnlyFrozenWeightsQuantise) {
  Proj p(64, 48, false);
  try {
    p->QuantizeNf4();
    FAIL() << "a trainable weight was quantised";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("only a frozen weight"), std::string::npos) << e.what();
  }
}

std::string SmolLm2Path() {
  const char* cache = std::getenv("DFAR_CACHE");
  const std::string root = cache != nullptr && *cache != '\0' ? cache : std::string(DFAR_SOURCE_DIR) + "/.cache";
  return root + "/models/smollm2-135m-instruct.gguf";
}

// Next-token labels on every position of a DFAR-like statement and reason.
BatchTensors StatementBatch(const Tokenizer& tok) {
  const auto ids32 = tok.Encode(
      "Statement: I returned the extra change the cashier gave me by mistake. Label: ethical. Reason: keeping "
      "money that was handed over by mistake would be taking what is not yours, and returning it is honest.");
  const std::vector<int64_t> ids(ids32.begin(), ids32.end());
  return testing::NextTokenBatch(torch::tensor(ids, torch::kLong).unsqueeze(0));
}

// QLoRA on SmolLM2-135M (fp32 compute, so that it runs at speed on AVX2
// CPUs too; the quantisation error does not depend on the compute dtype).
// The first step's loss, before any update, is the base model's loss with
// NF4 weights (B = 0 makes the adapters inactive). How far it may move: NF4
// rounds each weight to one of 16 levels of its block's absmax, an RMS error
// of ~9% of the weights' RMS for normally distributed weights (0.00184 for
// N(0, 0.02), tests/weights/nf4_test.cpp's figures); checked below per
// projection of layer 0 (<= 12%). Every one of the 210 projections carries
// such noise, and a 135M model has little redundancy to absorb it: the
// measured loss moved by 11.7% (4.364 -> 4.872 nats). QLoRA's "NF4 is as good
// as 16-bit" is for 7B+ models; on this small one the tolerance is 20%. A
// wrong nibble order, absmax mapping or shape scrambles the weights and
// moves the loss by > 100% (to ~ln(vocab) = 10.8). Three steps then lower
// the loss.
TEST(Nf4LinearTest, QloraStepOnSmolLm2MatchesTheDenseLossAndTrains) {
  const std::string path = SmolLm2Path();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is missing (make deps fetches it)";
  auto comm = MakeSingleCommunicator();
  std::vector<double> first;
  for (bool nf4 : {false, true}) {
    auto model = LoadPretrained(path, true);
    auto& d = model.decoder;
    d->EnableLora({"q", "k", "v", "o", "gate", "up", "down"}, 8, 16.0, 0.0);
    if (nf4) {
      auto* block0 = d->layers->ptr<BlockImpl>(0).get();
      std::vector<std::pair<Proj, torch::Tensor>> dense;
      for (Proj p : {block0->attn->q, block0->attn->k, block0->attn->v, block0->attn->o, block0->mlp->gate,
                     block0->mlp->up, block0->mlp->down})
        dense.emplace_back(p, p->weight.detach().clone());
      const auto q = d->QuantizeBaseNf4();
      for (const auto& [p, w] : dense) {
        const double rel = ((DequantizeNf4Weight(*p->nf4, torch::kFloat) - w).norm() / w.norm()).item<double>();
        EXPECT_LE(rel, 0.12);
        std::printf("[ NF4 layer 0 ] %lld x %lld: relative RMS error %.4f\n", static_cast<long long>(w.size(0)),
                    static_cast<long long>(w.size(1)), rel);
      }
      EXPECT_EQ(q.weights, 7 * d->config().num_layers);
      std::printf("[ NF4 base ] %lld weights, %.2f MB (%.4f bits per parameter) against %.2f MB in fp32\n",
                  static_cast<long long>(q.params), q.bytes / 1e6, 8.0 * q.bytes / static_cast<double>(q.params),
                  q.dense_bytes / 1e6);
      EXPECT_LT(8.0 * q.bytes / static_cast<double>(q.params), 4.13);
    }
    d->train();
    StepEngine engine(d, *comm, StepEngineOptions{});
    const auto batch = StatementBatch(*model.tokenizer);
    const double count = static_cast<double>(batch.targets.numel());
    std::vector<double> losses;
    for (int step = 0; step < 3; ++step) {
      engine.ForwardBackward({batch}, count);
      losses.push_back(engine.Update(1e-3, 1.0).loss);
    }
    first.push_back(losses.front());
    if (nf4) EXPECT_LT(losses.back(), losses.front());
  }
  const double rel = std::abs(first[1] - first[0]) / first[0];
  std::printf("[ QLoRA ] first-step loss: dense %.5f, NF4 %.5f (relative difference %.4f, tolerance 0.2)\n", first[0],
              first[1], rel);
  EXPECT_LE(rel, 0.2);
}

}  // namespace
}  // namespace dfar
