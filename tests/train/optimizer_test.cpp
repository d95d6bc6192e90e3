// AdamW against torch.optim.AdamW (golden values from
// tools/make_adamw_golden.py), and the fused CPU kernel against the
// tensor-op form in fp32 and bf16.
#include "dfar/train/optimizer.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "dfar/comm/communicator.h"
#include "dfar/core/torch_compat.h"
#include "dfar/train/flat_params.h"

namespace dfar {
namespace {

using Named = std::vector<std::pair<std::string, torch::Tensor>>;

// Three steps of lr 0.01, weight decay 0.1 (not on the norm), gradient of
// step s = g0 * s - 0.05 s^2, as the generator does; returns the parameters.
std::pair<torch::Tensor, torch::Tensor> ThreeGoldenSteps(bool fused) {
  auto w = torch::tensor({0.5f, -0.25f, 1.0f, -1.5f, 0.125f, 2.0f}).set_requires_grad(true);
  auto n = torch::tensor({1.0f, 0.75f}).set_requires_grad(true);
  const auto gw = torch::tensor({0.1f, -0.2f, 0.3f, 0.05f, -0.4f, 0.0f});
  const auto gn = torch::tensor({0.02f, -0.03f});
  FlatParameters flat(Named{{"w", w}, {"norm.weight", n}}, 1, 32);
  AdamWOptions o;
  o.weight_decay = 0.1;
  o.fused = fused;
  AdamW adamw(flat, o);
  for (int s = 1; s <= 3; ++s) {
    w.mutable_grad().copy_(gw * s - 0.05f * s * s);
    n.mutable_grad().copy_(gn * s - 0.05f * s * s);
    adamw.Step(0.01);
  }
  return {w.clone(), n.clone()};
}

TEST(AdamWTest, MatchesTorchOptimAdamWFusedAndUnfused) {
  const auto golden_w = torch::tensor(
      {4.862521291e-01f, -2.205606699e-01f, 9.672470093e-01f, -1.480191827e+00f, 1.535302252e-01f, 2.021475315e+00f});
  const auto golden_n = torch::tensor({1.026988149e+00f, 7.779451609e-01f});
  for (bool fused : {true, false}) {
    const auto [w, n] = ThreeGoldenSteps(fused);
    EXPECT_TRUE(torch::allclose(w, golden_w, 1e-6, 1e-7)) << "fused=" << fused << "\n" << w;
    EXPECT_TRUE(torch::allclose(n, golden_n, 1e-6, 1e-7)) << "fused=" << fused << "\n" << n;
  }
}

// The owned ranges ZeRO 1 gives rank `rank` of 2 with buckets of 0.01 MB:
// for the 8000 + 2000 parameters below, two buckets ([bias] and [w]) and
// two owned halves that cut across them.
FlatLayout TwoRankZero1(int rank, c10::optional<torch::ScalarType> reduce = c10::nullopt) {
  return FlatLayout{2, rank, 0.01, 1, reduce};
}

// A bf16 model of 10k parameters over two owned ranges (as ZeRO gives a rank):
// the fused kernel and the tensor-op form agree on masters, moments and the
// rounded bf16 parameters.
TEST(AdamWTest, FusedBf16EqualsTensorOpsOverOwnedRanges) {
  torch::manual_seed(3);
  const auto w0 = torch::randn({100, 80}).to(torch::kBFloat16), b0 = torch::randn({2000}).to(torch::kBFloat16);
  const auto gw = torch::randn({100, 80}).to(torch::kBFloat16), gb = torch::randn({2000}).to(torch::kBFloat16);
  std::vector<torch::Tensor> params, masters, moments;
  torch::Tensor initial;
  std::vector<std::pair<int64_t, int64_t>> owned;
  for (bool fused : {true, false}) {
    auto w = w0.clone().set_requires_grad(true), b = b0.clone().set_requires_grad(true);
    FlatParameters flat(Named{{"w", w}, {"x.bias", b}}, TwoRankZero1(0));
    ASSERT_EQ(flat.owned().size(), 2u);
    owned = flat.owned();
    initial = flat.data().clone();
    AdamWOptions o;
    o.weight_decay = 0.01;
    o.fused = fused;
    AdamW adamw(flat, o);
    for (int s = 0; s < 4; ++s) {
      w.mutable_grad().copy_(gw * (s + 1));
      b.mutable_grad().copy_(gb / (s + 1));
      adamw.Step(1e-3);
    }
    params.push_back(flat.data().clone());
    masters.push_back(adamw.master().clone());
    moments.push_back(torch::cat({adamw.exp_avg(), adamw.exp_avg_sq()}));
  }
  EXPECT_TRUE(torch::allclose(masters[0], masters[1], 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(moments[0], moments[1], 1e-6, 1e-9));
  // bf16 rounding of nearly equal masters may differ by one ulp at a tie.
  EXPECT_TRUE(torch::allclose(params[0].to(torch::kFloat), params[1].to(torch::kFloat), 1e-2, 0));
  int64_t previous_end = 0;
  for (const auto& [b, e] : owned) {
    EXPECT_TRUE(torch::equal(params[0].narrow(0, previous_end, b - previous_end),
                             initial.narrow(0, previous_end, b - previous_end)));            // Not owned.
    EXPECT_FALSE(torch::equal(params[0].narrow(0, b, e - b), initial.narrow(0, b, e - b)));  // Updated.
    previous_end = e;
  }
}

// The global gradient norm of 20M elements against an fp64 reference. The
// sequential fp32 accumulation of libtorch's CPU vector norm was 1.5% off
// at 135M elements (SmolLM2's gradients) and ~0.2% here; pairwise sums of
// 1M-element chunks are within ~1e-8. 1e-6 leaves 100x over that.
TEST(GradNormTest, NormOfManyElementsIsAccurate) {
  torch::manual_seed(5);
  auto w = torch::zeros({20'000'000}).set_requires_grad(true);
  FlatParameters flat(Named{{"w", w}}, 1, 1024);
  flat.main_grad().copy_(torch::randn({20'000'000}) * 1e-3);
  const double want = flat.main_grad().to(torch::kDouble).pow(2).sum().item<double>();
  const double got = GradSquaredNorm(flat).item<double>();
  EXPECT_NEAR(got / want, 1.0, 1e-6);
}

// Weight decay by parameter pieces: owned ranges that cut across parameters
// (and skip padding) still decay exactly the parameters that decay.
TEST(FlatParametersTest, PiecesCarryEachParameterDecayFlag) {
  auto w = torch::zeros({10}).set_requires_grad(true), n = torch::zeros({6}).set_requires_grad(true);
  auto b = torch::zeros({5}).set_requires_grad(true);
  FlatParameters flat(Named{{"w", w}, {"norm.weight", n}, {"x.bias", b}}, 4, 32);
  ASSERT_EQ(flat.buckets().size(), 1u);  // Offsets: w 0..10, norm 10..16, bias 16..21; padded to 24.
  const auto pieces = flat.PiecesIn(8, 24);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[0].begin, 8);
  EXPECT_EQ(pieces[0].end, 10);
  EXPECT_TRUE(pieces[0].decay);
  EXPECT_EQ(pieces[1].begin, 10);
  EXPECT_EQ(pieces[1].end, 16);
  EXPECT_FALSE(pieces[1].decay);
  EXPECT_EQ(pieces[2].begin, 16);
  EXPECT_EQ(pieces[2].end, 21);
  EXPECT_FALSE(pieces[2].decay);
  EXPECT_TRUE(flat.PiecesIn(21, 24).empty());  // Padding only.
}

// The CUDA path's kernel, torch's _fused_adamw_ (the kernel of
// torch.optim.AdamW(fused=True)), run on the CPU through the same calling
// code, against dfar's CPU loop: fp32 parameters, and bf16 parameters with
// fp32 masters fed bf16 gradients (staged to fp32) or fp32 ones (reduced in
// fp32). Same formula in fp32 with a different operation order: 4 steps
// agree to 1e-6 relative (a few ulps per step, compounded).
TEST(AdamWTest, TorchFusedKernelEqualsTheCpuLoop) {
  if (!compat::kHasFusedAdamW) GTEST_SKIP() << "at::_fused_adamw_ needs libtorch >= 2.0 (this is 1.13)";
  torch::manual_seed(9);
  struct Case {
    torch::ScalarType param;
    bool reduce_fp32;
  };
  for (const Case c : {Case{torch::kFloat, false}, Case{torch::kBFloat16, false}, Case{torch::kBFloat16, true}}) {
    const auto w0 = torch::randn({64, 50}).to(c.param), b0 = torch::randn({700}).to(c.param);
    const auto gw = torch::randn({64, 50}), gb = torch::randn({700});
    std::vector<torch::Tensor> state;
    for (bool torch_kernel : {false, true}) {
      auto w = w0.clone().set_requires_grad(true), b = b0.clone().set_requires_grad(true);
      c10::optional<torch::ScalarType> reduce;
      if (c.reduce_fp32) reduce = torch::kFloat;
      FlatParameters flat(Named{{"w", w}, {"x.bias", b}}, TwoRankZero1(1, reduce));
      AdamWOptions o;
      o.weight_decay = 0.05;
      o.torch_fused_on_cpu = torch_kernel;
      AdamW adamw(flat, o);
      for (int s = 1; s <= 4; ++s) {
        auto g = torch::cat({(gw * s).reshape({-1}), (gb / s)});
        flat.main_grad().narrow(0, 0, g.numel()).copy_(g);
        adamw.Step(2e-3);
      }
      state.push_back(torch::cat({adamw.master().defined() ? adamw.master() : flat.data().to(torch::kFloat),
                                  adamw.exp_avg(), adamw.exp_avg_sq()}));
    }
    EXPECT_TRUE(torch::allclose(state[0], state[1], 1e-6, 1e-8))
        << "param dtype " << c.param << " reduce fp32 " << c.reduce_fp32 << ": max diff "
        << (state[0] - state[1]).abs().max().item<double>();
  }
}

}  // namespace
}  // namespace dfar
