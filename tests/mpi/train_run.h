// What the multi-rank training tests share: a run dir every rank agrees
// on, the tiny config, one training run with its first-step gradients and
// final parameters (read back from the last checkpoint), and the metrics.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dfar/core/config.h"
#include "dfar/train/trained_model.h"
#include "dfar/train/trainer.h"

namespace dfar {

inline std::vector<double> MetricLosses(const std::string& run_dir) {
  std::vector<double> losses;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto loss = nlohmann::json::parse(line)["loss"];  // null for a skipped, non-finite step.
    losses.push_back(loss.is_null() ? std::nan("") : loss.get<double>());
  }
  return losses;
}

// A run dir every rank agrees on (rank 0's pid), unique per test.
inline std::string SharedRunDir(Communicator& comm, const std::string& name) {
  const auto pids = comm.AllGatherBytes(std::to_string(getpid()));
  return (std::filesystem::path(::testing::TempDir()) / ("dfar-train-" + pids[0] + "-" + name)).string();
}

inline Config TinyConfig(const std::string& dir, std::vector<std::string> overrides) {
  overrides.insert(overrides.begin(),
                   {"run.dir=" + dir, "train.max_steps=3", "train.warmup_ratio=0", "train.eval_every=0", "ckpt.every=0",
                    "lora.enabled=false", "train.lr=0.003", "data.limit=96", "run.log_level=warn"});
  return LoadConfig(std::string(DFAR_SOURCE_DIR) + "/configs/tiny-lora-lr.yaml", overrides);
}

struct RunResult {
  TrainSummary summary;
  std::map<std::string, torch::Tensor> params;
  std::map<std::string, torch::Tensor> first_grads;  // Reduced gradients of step 1.
  double first_loss = 0;
};

inline RunResult Train(const Config& config, Communicator& comm) {
  TrainOptions options;
  options.overwrite = true;
  options.watchdog = false;  // One communicator trains many times in this test.
  RunResult r;
  options.observe_gradients = [&r](int64_t step, const std::map<std::string, torch::Tensor>& grads) {
    if (step == 0) r.first_grads = grads;
  };
  r.summary = RunTraining(config, options, comm);
  if (comm.rank() == 0) r.first_loss = MetricLosses(config.run.dir).at(0);
  comm.Broadcast(&r.first_loss, 1, DType::kFloat64, 0);
  auto model = LoadTrainedModel(r.summary.last_checkpoint, nullptr);
  for (const auto& p : model.decoder->named_parameters()) r.params[p.key()] = p.value().detach().clone();
  return r;
}

inline double MaxDiff(const RunResult& a, const RunResult& b) {
  double worst = 0;
  for (const auto& [name, t] : a.params) worst = std::max(worst, (t - b.params.at(name)).abs().max().item<double>());
  return worst;
}

}  // namespace dfar
