// See step_util.h. The step itself is the library's StepEngine, the one
// src/train/trainer.cpp drives; only data loading and logging are left out.
#include "step_util.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "dfar/core/config.h"
#include "dfar/core/error.h"
#include "dfar/data/collate.h"
#include "dfar/model/export.h"
#include "train/train_data.h"

namespace dfar::bench {

namespace {

// The examples greedy packing puts into `rows` rows of `cols` from `first`
// on: CollatePacked starts a new row when an example does not fit.
size_t PackedRun(const std::vector<TokenizedExample>& all, size_t first, int64_t rows, int64_t cols) {
  int64_t row = 0, used = 0;
  size_t i = first;
  for (; i < all.size(); ++i) {
    const int64_t n = static_cast<int64_t>(all[i].ids.size());
    if (used + n > cols) {
      if (++row == rows) break;
      used = 0;
    }
    used += n;
  }
  return i - first;
}

}  // namespace

DfarBatch MakeDfarBatch(const Tokenizer& tok, int rank, int64_t rows, int64_t cols) {
  const Config config = LoadConfig("configs/demo-lr.yaml", {});
  DFAR_CHECK(config.prompt.max_seq_len <= cols, "configs/demo-lr.yaml: prompt.max_seq_len ", config.prompt.max_seq_len,
             " does not fit the benchmark's rows of ", cols);
  const std::vector<TokenizedExample> all = TokenizeTrainingData(config, tok).train;
  size_t first = 0;
  for (int r = 0; r < rank; ++r) first += PackedRun(all, first, rows, cols);
  const size_t n = PackedRun(all, first, rows, cols);
  DFAR_CHECK(n > 0, config.data.train, ": not enough training rows for rank ", rank, "'s batch");
  DfarBatch d;
  d.examples.assign(all.begin() + static_cast<long>(first), all.begin() + static_cast<long>(first + n));
  const Batch packed = CollatePacked(d.examples, std::max(tok.pad_id(), 0), cols);
  DFAR_CHECK(packed.rows <= rows, "packed ", n, " examples into ", packed.rows, " rows, expected at most ", rows);
  d.batch.tensors = ToTensors(packed, /*packed=*/true, torch::kCPU);
  d.batch.supervised = static_cast<double>(packed.supervised_tokens);
  d.real_tokens = packed.real_tokens;
  return d;
}

void WriteExamples(const std::vector<TokenizedExample>& examples, const std::string& path) {
  nlohmann::json j;
  j["examples"] = nlohmann::json::array();
  for (const auto& e : examples)
    j["examples"].push_back({{"index", e.index}, {"ids", e.ids}, {"prompt_len", e.prompt_len}});
  std::ofstream out(path + ".tmp");
  out << j.dump() << "\n";
  out.close();
  DFAR_CHECK(out.good(), path, ": could not write the benchmark's examples");
  std::filesystem::rename(path + ".tmp", path);
}

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

namespace {

// model.device / model.dtype for the run setup of a benchmark case.
ModelSection Placement(const TrainSetup& setup) {
  ModelSection m;
  m.device = setup.device;
  m.dtype = setup.dtype == torch::kBFloat16 ? "bf16" : "fp32";
  return m;
}

}  // namespace

Trainee::Trainee(PretrainedModel model, const TrainSetup& setup, Communicator& comm)
    : comm_(comm), run_(std::make_unique<RunSetup>(Placement(setup), comm)), model_(std::move(model)) {
  auto& d = model_.decoder;
  if (setup.lora) {
    torch::manual_seed(1234);  // Same adapters on every rank, as the trainer seeds before BuildModel.
    d->EnableLora({"q", "k", "v", "o", "gate", "up", "down"}, 64, 16.0, 0.0);
  }
  d->to(run_->device(), run_->dtype());
  d->train();
  StepEngineOptions o;
  o.bucket_mb = setup.bucket_mb;
  engine_ = std::make_unique<StepEngine>(d, run_->tensors(), o);
}

double Trainee::Step(const StepBatch& batch, double lr) {
  double count = batch.supervised;
  comm_.AllReduce(&count, 1, DType::kFloat64, ReduceOp::kSum);
  engine_->ForwardBackward({batch.tensors}, count);
  const double loss = engine_->Update(lr, 1.0).loss;
  if (run_->device().is_cuda()) torch::cuda::synchronize(run_->device().index());
  return loss;
}

StepBatch Trainee::OnDevice(const StepBatch& batch) const {
  StepBatch out = batch;
  for (torch::Tensor* t : {&out.tensors.input_ids, &out.tensors.labels, &out.tensors.position_ids,
                           &out.tensors.segment_ids, &out.tensors.supervised_rows, &out.tensors.targets})
    if (t->defined()) *t = t->to(run_->device());
  return out;
}

}  // namespace dfar::bench
