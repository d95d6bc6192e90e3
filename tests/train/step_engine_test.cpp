// StepEngine on one process, and the model-FLOPs count checked by hand.
#include "dfar/train/step_engine.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "dfar/core/torch_compat.h"
#include "helpers/model_util.h"

namespace dfar {
namespace {

ModelConfig TinyConfig(bool tied) {
  ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = 64;
  c.hidden_size = 16;
  c.intermediate_size = 40;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.max_position = 64;
  c.tie_embeddings = tied;
  return c;
}

Decoder TinyDecoder(bool tied) {
  torch::manual_seed(7);
  Decoder d(TinyConfig(tied));
  torch::NoGradGuard no_grad;
  for (auto& p : d->named_parameters()) {
    if (p.key().find("norm") != std::string::npos) {
      p.value().fill_(1.0);
    } else {
      p.value().normal_(0.0, 0.1);
    }
  }
  return d;
}

// Projection weights of one layer: q, o (h x h), k, v (h x kv*hd), gate, up, down (h x i).
double LayerMatmulWeights(const ModelConfig& c) {
  const double h = c.hidden_size, kv = c.num_kv_heads * c.head_dim, i = c.intermediate_size;
  return 2 * h * h + 2 * h * kv + 3 * h * i;
}

TEST(TrainFlopsTest, FullFineTuningCountsSixPerMatmulWeightPlusAttention) {
  Decoder d = TinyDecoder(/*tied=*/true);
  const auto& c = d->config();
  const double n = c.num_layers * LayerMatmulWeights(c) + c.vocab_size * c.hidden_size;  // Tied LM head.
  const double attention = 12.0 * c.num_layers * c.hidden_size * 10;
  EXPECT_DOUBLE_EQ(TrainFlopsPerToken(d, 10, false), 6 * n + attention);
  // Activation checkpointing recomputes one forward: 2 N + 4 L h T.
  EXPECT_DOUBLE_EQ(TrainFlopsPerToken(d, 10, true), 8 * n + attention * 4 / 3);
}

TEST(TrainFlopsTest, LoraCountsFourPerFrozenWeightAndSixPerAdapterWeight) {
  Decoder d = TinyDecoder(/*tied=*/false);
  d->EnableLora({"q", "v"}, 2, 4.0, 0.0);
  const auto& c = d->config();
  const double frozen = c.num_layers * LayerMatmulWeights(c) + c.vocab_size * c.hidden_size;  // Untied head.
  const double kv = c.num_kv_heads * c.head_dim;
  const double adapters = c.num_layers * (2.0 * (c.hidden_size + c.hidden_size) + 2.0 * (c.hidden_size + kv));
  const double attention = 12.0 * c.num_layers * c.hidden_size * 8;
  EXPECT_DOUBLE_EQ(TrainFlopsPerToken(d, 8, false), 4 * frozen + 6 * adapters + attention);
}

BatchTensors FixedBatch() {
  auto ids = torch::arange(24, torch::kLong).remainder(64).reshape({2, 12});
  auto labels = torch::full({2, 12}, -100, torch::kLong);
  labels.slice(1, 6, 11).copy_(ids.slice(1, 7, 12));
  return testing::LabelledBatch(ids, labels);
}

TEST(StepEngineTest, LossFallsOnARepeatedBatchAndGradientsEndZeroed) {
  auto comm = MakeSingleCommunicator();
  Decoder d = TinyDecoder(false);
  d->train();
  StepEngine engine(d, *comm, StepEngineOptions{});
  const BatchTensors batch = FixedBatch();
  const double count = batch.labels.ne(-100).sum().item<double>();
  double first = 0, last = 0;
  for (int step = 0; step < 5; ++step) {
    engine.ForwardBackward({batch}, count);
    const StepResult r = engine.Update(1e-2, 1.0);
    EXPECT_FALSE(r.skipped);
    EXPECT_GT(r.grad_norm, 0.0);
    EXPECT_EQ(engine.flat().grad().abs().sum().item<double>(), 0.0);
    (step == 0 ? first : last) = r.loss;
  }
  EXPECT_LT(last, first);
  EXPECT_EQ(engine.optimizer().steps(), 5);
}

// On one rank every ZeRO stage does ZeRO 0's arithmetic (the reductions
// are copies), so 4 AdamW steps of 2 accumulated micro-batches give equal
// parameters; only the staging (ZeRO 2/3) and the gather/free cycle of each
// layer around its forward and backward (ZeRO 3, with and without
// activation checkpointing, tied and untied heads) differ. Equal to 1e-6:
// the fp32 sums of a micro-step's gradient and of the accumulated one
// associate differently for ZeRO 2/3 (staged per micro-step, then added).
TEST(StepEngineTest, EveryZeroStageOnOneRankEqualsZero0) {
  auto comm = MakeSingleCommunicator();
  const BatchTensors batch = FixedBatch();
  const double count = 2 * batch.labels.ne(-100).sum().item<double>();
  for (bool tied : {false, true}) {
    for (bool checkpointing : {false, true}) {
      std::map<std::string, torch::Tensor> reference;
      for (int zero : {0, 1, 2, 3}) {
        Decoder d = TinyDecoder(tied);
        d->train();
        d->set_activation_checkpointing(checkpointing);
        StepEngineOptions o;
        o.zero = zero;
        o.bucket_mb = 0.001;  // Several buckets for ZeRO 0-2.
        StepEngine engine(d, *comm, o);
        for (int step = 0; step < 4; ++step) {
          engine.ForwardBackward({batch, batch}, count);
          engine.Update(1e-2, 1.0);
        }
        engine.GatherAllParameters();
        for (const auto& p : d->named_parameters()) {
          const auto value = p.value().detach().clone();
          if (zero == 0) {
            reference[p.key()] = value;
            continue;
          }
          EXPECT_TRUE(torch::allclose(value, reference.at(p.key()), 0, 1e-6))
              << "ZeRO " << zero << " tied " << tied << " checkpointing " << checkpointing << ": " << p.key();
        }
        if (zero == 3) EXPECT_GT(engine.gather()->gathers_launched(), 4 * 2 * 2);
      }
    }
  }
}

TEST(StepEngineTest, APoisonedStepIsSkippedAndLeavesParametersUntouched) {
  auto comm = MakeSingleCommunicator();
  Decoder d = TinyDecoder(false);
  StepEngine engine(d, *comm, StepEngineOptions{});
  const BatchTensors batch = FixedBatch();
  const torch::Tensor before = engine.flat().data().clone();
  engine.ForwardBackward({batch}, 10, /*poison=*/true);
  const StepResult r = engine.Update(1e-2, 1.0);
  EXPECT_TRUE(std::isnan(r.loss));
  EXPECT_TRUE(r.skipped);
  EXPECT_TRUE(torch::equal(before, engine.flat().data()));
  EXPECT_EQ(engine.optimizer().steps(), 0);
}

// dist.reduce_dtype fp32: bf16 gradients of two micro-steps, 1 and 2^-9,
// accumulate to exactly 1 + 2^-9 in fp32; in bf16 (8 significant bits) the
// sum rounds back to 1, so the second micro-step is lost.
TEST(GradientSyncTest, Fp32ReduceDtypeKeepsWhatBf16AccumulationRoundsAway) {
  auto comm = MakeSingleCommunicator();
  for (bool fp32 : {false, true}) {
    auto p = torch::zeros({4}, torch::kBFloat16).set_requires_grad(true);
    c10::optional<torch::ScalarType> reduce;
    if (fp32) reduce = torch::kFloat;
    FlatParameters flat({{"w", p}}, 1, 32, reduce);
    GradientSync sync(flat, *comm, {p});
    const double scales[] = {1.0, std::ldexp(1.0, -9)};
    for (int k = 0; k < 2; ++k) {
      sync.BeginBackward(k == 1);
      (p.to(torch::kFloat) * scales[k]).sum().backward();
    }
    sync.Finish();
    EXPECT_EQ(flat.separate_main_grad(), fp32);
    const double got = flat.main_grad()[0].item<double>();
    EXPECT_EQ(got, fp32 ? 1.0 + std::ldexp(1.0, -9) : 1.0) << "reduce fp32 " << fp32;
    if (fp32) EXPECT_EQ(flat.grad().abs().sum().item<double>(), 0.0);  // Moved out as it landed.
  }
}

// A collated batch becomes device tensors in one upload, with the
// supervised positions and their targets found on the host, and the packed
// samples as spans.
TEST(ToTensorsTest, SupervisedRowsTargetsAndSpansComeFromTheHost) {
  Batch b;
  b.rows = 2;
  b.cols = 5;
  b.input_ids = {1, 2, 3, 4, 0, 5, 6, 7, 0, 0};
  b.labels = {-100, 3, -100, 9, -100, 6, -100, 8, -100, -100};
  b.position_ids = {0, 1, 0, 1, 0, 0, 1, 2, 0, 0};
  b.segment_ids = {1, 1, 2, 2, 0, 1, 1, 1, 0, 0};
  const BatchTensors t = ToTensors(b, /*packed=*/true, torch::kCPU);
  EXPECT_TRUE(torch::equal(t.supervised_rows, torch::tensor({1, 3, 5, 7}, torch::kLong)));
  EXPECT_TRUE(torch::equal(t.targets, torch::tensor({3, 9, 6, 8}, torch::kLong)));
  EXPECT_TRUE(torch::equal(t.input_ids[1], torch::tensor({5, 6, 7, 0, 0}, torch::kLong)));
  EXPECT_TRUE(torch::equal(t.segment_ids[0], torch::tensor({1, 1, 2, 2, 0}, torch::kLong)));
  if (!compat::kSdpaFusedWithoutMask) {  // libtorch 1.13: the dense mask is faster, no spans.
    EXPECT_TRUE(t.spans.empty());
    return;
  }
  ASSERT_EQ(t.spans.size(), 3u);
  const std::vector<std::vector<int64_t>> want = {{0, 0, 2}, {0, 2, 2}, {1, 0, 3}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(t.spans[i].row, want[i][0]) << i;
    EXPECT_EQ(t.spans[i].start, want[i][1]) << i;
    EXPECT_EQ(t.spans[i].length, want[i][2]) << i;
  }
}

}  // namespace
}  // namespace dfar
