// StepEngine on one process, and the model-FLOPs count checked by hand.
#include "dfar/train/step_engine.h"

#include <gtest/gtest.h>

#include <cmath>

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
  BatchTensors b;
  b.input_ids = torch::arange(24, torch::kLong).remainder(64).reshape({2, 12});
  b.labels = torch::full({2, 12}, -100, torch::kLong);
  b.labels.slice(1, 6, 11).copy_(b.input_ids.slice(1, 7, 12));
  return b;
}

TEST(StepEngineTest, LossFallsOnARepeatedBatchAndGradientsEndZeroed) {
  auto comm = MakeSingleCommunicator();
  Decoder d = TinyDecoder(false);
  d->train();
  StepEngine engine(d, *comm, *comm, StepEngineOptions{});
  const BatchTensors batch = FixedBatch();
  const double count = batch.labels.ne(-100).sum().item<double>();
  double first = 0, last = 0;
  for (int step = 0; step < 5; ++step) {
    const double loss = engine.ForwardBackward({batch}, count);
    const StepResult r = engine.Update(loss, 1e-2, 1.0);
    EXPECT_FALSE(r.skipped);
    EXPECT_GT(r.grad_norm, 0.0);
    EXPECT_EQ(engine.flat().grad().abs().sum().item<double>(), 0.0);
    (step == 0 ? first : last) = loss;
  }
  EXPECT_LT(last, first);
  EXPECT_EQ(engine.optimizer().steps(), 5);
}

TEST(StepEngineTest, APoisonedStepIsSkippedAndLeavesParametersUntouched) {
  auto comm = MakeSingleCommunicator();
  Decoder d = TinyDecoder(false);
  StepEngine engine(d, *comm, *comm, StepEngineOptions{});
  const BatchTensors batch = FixedBatch();
  const torch::Tensor before = engine.flat().data().clone();
  const double loss = engine.ForwardBackward({batch}, 10, /*poison=*/true);
  EXPECT_TRUE(std::isnan(loss));
  const StepResult r = engine.Update(loss, 1e-2, 1.0);
  EXPECT_TRUE(r.skipped);
  EXPECT_TRUE(torch::equal(before, engine.flat().data()));
  EXPECT_EQ(engine.optimizer().steps(), 0);
}

}  // namespace
}  // namespace dfar
