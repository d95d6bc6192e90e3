// See step_util.h. Every training call here is the one src/train/trainer.cpp
// makes, in the same order; only data loading and logging are left out.
#include "step_util.h"

#include <cmath>
#include <filesystem>
#include <vector>

#include "dfar/data/collate.h"
#include "dfar/model/export.h"

namespace dfar::bench {

StepBatch MakeStepBatch(int rank, int64_t rows, int64_t cols, int64_t vocab) {
  auto ids = torch::empty({rows, cols}, torch::kLong);
  auto labels = torch::full({rows, cols}, static_cast<int64_t>(kIgnoreIndex), torch::kLong);
  auto id = ids.accessor<int64_t, 2>();
  auto label = labels.accessor<int64_t, 2>();
  for (int64_t b = 0; b < rows; ++b) {
    const int64_t g = rank * rows + b;
    for (int64_t t = 0; t < cols; ++t) id[b][t] = (17 + 1009 * g + 31 * t + 7 * ((g * t) % 13)) % vocab;
  }
  StepBatch batch;
  for (int64_t b = 0; b < rows; ++b) {
    for (int64_t t = cols / 2; t + 1 < cols; ++t) {
      label[b][t] = id[b][t + 1];
      batch.supervised += 1;
    }
  }
  batch.tensors.input_ids = ids;
  batch.tensors.labels = labels;
  return batch;
}

ModelConfig TinyLlamaConfig() {
  ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.intermediate_size = 176;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = c.hidden_size / c.num_heads;
  c.max_position = 512;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_embeddings = false;
  return c;
}

PretrainedModel MakeTinyLlama() {
  PretrainedModel m;
  m.decoder = Decoder(TinyLlamaConfig());
  m.source = "tiny-llama (random, seed 1234)";
  torch::NoGradGuard no_grad;
  torch::manual_seed(1234);
  for (auto& p : m.decoder->named_parameters()) {
    if (p.key().find("norm") != std::string::npos) {
      p.value().fill_(1.0);
    } else {
      p.value().normal_(0.0, 0.02);
    }
  }
  return m;
}

void ExportFresh(PretrainedModel& model, const std::string& dir) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(std::filesystem::path(dir).parent_path());
  ExportHfModel(model, dir);
}

Trainee::Trainee(PretrainedModel model, const TrainSetup& setup, Communicator& comm)
    : comm_(comm), model_(std::move(model)) {
  auto& d = model_.decoder;
  if (setup.lora) {
    torch::manual_seed(1234);  // Same adapters on every rank, as the trainer seeds before BuildModel.
    d->EnableLora({"q", "k", "v", "o", "gate", "up", "down"}, 64, 16.0, 0.0);
  }
  d->to(torch::kCPU, setup.dtype);
  d->train();
  std::vector<std::pair<std::string, torch::Tensor>> named;
  std::vector<torch::Tensor> tensors;
  for (const auto& p : d->named_parameters()) {
    if (!p.value().requires_grad()) continue;
    named.emplace_back(p.key(), p.value());
    tensors.push_back(p.value());
  }
  flat_ = std::make_unique<FlatParameters>(named, comm_.size(), setup.bucket_mb);
  comm_.Broadcast(flat_->data().data_ptr(), static_cast<size_t>(flat_->data().nbytes()), DType::kUInt8, 0);
  sync_ = std::make_unique<GradientSync>(*flat_, comm_, 0, tensors);
  optim_ = std::make_unique<AdamW>(*flat_, sync_->owned(), AdamWOptions{});
}

double Trainee::Step(const StepBatch& batch, double lr) {
  double count = batch.supervised;
  comm_.AllReduce(&count, 1, DType::kFloat64, ReduceOp::kSum);
  sync_->BeginBackward(true);
  auto ce = SupervisedCrossEntropySum(model_.decoder, batch.tensors);
  double ce_sum = ce.item<double>();
  (ce / count).backward();
  sync_->Finish();
  comm_.AllReduce(&ce_sum, 1, DType::kFloat64, ReduceOp::kSum);
  const double loss = ce_sum / count;
  const double norm = ClipGradNorm(*flat_, sync_->owned(), 1.0, comm_, /*sharded=*/false);
  if (std::isfinite(norm) && std::isfinite(loss)) {  // The trainer skips non-finite steps.
    optim_->Step(lr);
    sync_->GatherParameters();
  }
  flat_->grad().zero_();
  return loss;
}

namespace {

struct ParamCounts {
  double matmul = 0, lora = 0;
};

ParamCounts CountParams(Decoder& decoder) {
  ParamCounts n;
  for (const auto& p : decoder->named_parameters()) {
    const std::string& name = p.key();
    const auto numel = static_cast<double>(p.value().numel());
    if (name.find("lora_") != std::string::npos) {
      n.lora += numel;
    } else if (name.find("norm") == std::string::npos && name.find(".bias") == std::string::npos &&
               name.rfind("embed.", 0) != 0) {
      n.matmul += numel;
    }
  }
  if (decoder->config().tie_embeddings) n.matmul += static_cast<double>(decoder->embed->weight.numel());
  return n;
}

}  // namespace

double TrainFlopsPerToken(Decoder& decoder, int64_t seq, bool lora) {
  const ParamCounts n = CountParams(decoder);
  const auto& c = decoder->config();
  const double attention = 12.0 * static_cast<double>(c.num_layers * c.hidden_size * seq);
  if (lora) return 4.0 * n.matmul + 6.0 * n.lora + attention;
  return 6.0 * n.matmul + attention;
}

}  // namespace dfar::bench
