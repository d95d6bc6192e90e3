// The CUDA path's own checks: what the CPU tests cannot show, run on a GPU
// by scripts/gpu_check.sh (step cuda-path). Every test skips without a CUDA
// device, so on the CI machine they only compile.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "dfar/core/torch_compat.h"
#include "dfar/train/flat_params.h"
#include "dfar/train/optimizer.h"
#include "helpers/model_util.h"

namespace dfar {
namespace {

using testing::DropoutLoraGradients;
using testing::LongContextDecoder;
using testing::RelativeRms;
using testing::SparseMarkerIds;

#define DFAR_NEEDS_CUDA()                                                      \
  do {                                                                         \
    if (compat::CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device here"; \
  } while (0)

const torch::Device kCuda(torch::kCUDA, 0);

// torch's _fused_adamw_ on the GPU (the trainer's CUDA kernel) against dfar's
// CPU loop, 4 steps: fp32, and bf16 parameters with fp32 masters fed bf16
// gradients (staged to fp32) or fp32 ones. Same formula in fp32, another
// operation order and CUDA's sqrt/division rounding: 1e-5 relative.
TEST(CudaPathTest, FusedAdamWOnTheGpuEqualsTheCpuLoop) {
  DFAR_NEEDS_CUDA();
  for (const auto& [dtype, reduce_fp32] : std::vector<std::pair<torch::ScalarType, bool>>{
           {torch::kFloat, false}, {torch::kBFloat16, false}, {torch::kBFloat16, true}}) {
    torch::manual_seed(9);
    const auto w0 = torch::randn({64, 50}).to(dtype), b0 = torch::randn({700}).to(dtype);
    const auto g0 = torch::randn({64 * 50 + 700});
    std::vector<torch::Tensor> state;
    for (const torch::Device& device : {torch::Device(torch::kCPU), kCuda}) {
      auto w = w0.to(device).set_requires_grad(true), b = b0.to(device).set_requires_grad(true);
      c10::optional<torch::ScalarType> reduce;
      if (reduce_fp32) reduce = torch::kFloat;
      // Rank 1 of 2 under ZeRO 1, buckets of 0.01 MB: two owned ranges.
      FlatParameters flat({{"w", w}, {"x.bias", b}}, FlatLayout{2, 1, 0.01, 1, reduce});
      AdamWOptions o;
      o.weight_decay = 0.05;
      AdamW adamw(flat, o);
      for (int s = 1; s <= 4; ++s) {
        flat.main_grad().narrow(0, 0, g0.numel()).copy_(g0 * s);
        adamw.Step(2e-3);
      }
      state.push_back(torch::cat({adamw.master().defined() ? adamw.master() : flat.data().to(torch::kFloat),
                                  adamw.exp_avg(), adamw.exp_avg_sq()})
                          .cpu());
    }
    EXPECT_TRUE(torch::allclose(state[0], state[1], 1e-5, 1e-7))
        << dtype << " reduce fp32 " << reduce_fp32 << ": max diff " << (state[0] - state[1]).abs().max().item<double>();
  }
}

// Dropout under activation checkpointing on the GPU: the recompute replays
// the CUDA generator, so the gradients equal those without checkpointing
// (the same kernels on the same values: 1e-6 relative).
TEST(CudaPathTest, CheckpointedDropoutReplaysTheCudaGenerator) {
  DFAR_NEEDS_CUDA();
  const std::vector<std::vector<torch::Tensor>> grads = {DropoutLoraGradients(false, kCuda),
                                                         DropoutLoraGradients(true, kCuda)};
  ASSERT_FALSE(grads[0].empty());
  for (size_t i = 0; i < grads[0].size(); ++i)
    EXPECT_LE((grads[0][i] - grads[1][i]).abs().max().item<float>(),
              1e-6f * (1 + grads[0][i].abs().max().item<float>()))
        << "trainable tensor " << i;
}

// A run resumed from a checkpoint draws the same CUDA dropout stream: the
// generator state that a checkpoint records reproduces the draws after it.
TEST(CudaPathTest, CudaGeneratorStateRoundTrips) {
  DFAR_NEEDS_CUDA();
  torch::manual_seed(21);
  (void)torch::rand({100}, torch::TensorOptions().device(kCuda));
  const auto saved = compat::RngState(kCuda).clone();
  const auto first = torch::rand({1000}, torch::TensorOptions().device(kCuda)).cpu();
  (void)torch::rand({77}, torch::TensorOptions().device(kCuda));
  compat::SetRngState(kCuda, saved);
  const auto again = torch::rand({1000}, torch::TensorOptions().device(kCuda)).cpu();
  EXPECT_TRUE(torch::equal(first, again));
}

// bf16 on the GPU at positions 256..511 against fp32 on the CPU: the same
// bound as the CPU test (DecoderTest.Bf16LogitsAtLatePositionsMatchFp32,
// where it is derived); CUDA's bf16 GEMMs also accumulate in fp32.
TEST(CudaPathTest, Bf16LogitsAtLatePositionsMatchFp32) {
  DFAR_NEEDS_CUDA();
  Decoder ref = LongContextDecoder(), low = LongContextDecoder();
  low->to(kCuda, torch::kBFloat16);
  torch::NoGradGuard no_grad;
  auto ids = SparseMarkerIds(512);
  auto want = ref->Logits(ref->forward({ids})).narrow(1, 256, 256);
  auto got = low->Logits(low->forward({ids.to(kCuda)})).narrow(1, 256, 256);
  EXPECT_LT(RelativeRms(got, want), 3e-2);
}

// Packed rows through span attention (flash / memory-efficient SDPA in bf16
// on the GPU) against the dense-mask path on the same GPU: 1e-2 relative RMS
// (two bf16 kernels with different blocking; u = 2^-9 per rounding).
TEST(CudaPathTest, PackedSpanAttentionEqualsTheDenseMaskInBf16) {
  DFAR_NEEDS_CUDA();
  Decoder d = LongContextDecoder();
  d->to(kCuda, torch::kBFloat16);
  torch::NoGradGuard no_grad;
  torch::manual_seed(6);
  const std::vector<int64_t> lengths = {40, 90, 61};
  std::vector<torch::Tensor> seg, pos;
  std::vector<SegmentSpan> spans;
  int64_t at = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    seg.push_back(torch::full({lengths[i]}, static_cast<int64_t>(i + 1), torch::kLong));
    pos.push_back(torch::arange(lengths[i]));
    spans.push_back({0, at, lengths[i]});
    at += lengths[i];
  }
  auto ids = torch::randint(0, 96, {1, at}, torch::kLong).to(kCuda);
  auto s = torch::cat(seg).unsqueeze(0).to(kCuda), p = torch::cat(pos).unsqueeze(0).to(kCuda);
  auto by_spans = d->forward({ids, p, s, spans}), by_mask = d->forward({ids, p, s});
  EXPECT_LT(RelativeRms(by_spans, by_mask), 1e-2);
}

}  // namespace
}  // namespace dfar
