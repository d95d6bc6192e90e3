// The distributed-training invariants, under mpirun -np 2 (OMP_NUM_THREADS=1):
// N ranks x batch B == 1 rank x batch N*B, accumulation, ZeRO, bucket size and
// the global gradient norm. Tolerance 1e-5 (fp32; only the summation order
// of gradients differs between the runs compared).
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "dfar/core/config.h"
#include "dfar/train/trained_model.h"
#include "dfar/train/trainer.h"
#include "mpi_test_main.h"

namespace dfar {
namespace {

namespace fs = std::filesystem;

// A run dir every rank agrees on (rank 0's pid), unique per test.
std::string SharedRunDir(Communicator& comm, const std::string& name) {
  const auto pids = comm.AllGatherBytes(std::to_string(getpid()));
  return (fs::path(::testing::TempDir()) / ("dfar-train-" + pids[0] + "-" + name)).string();
}

Config TinyConfig(const std::string& dir, std::vector<std::string> overrides) {
  overrides.insert(overrides.begin(),
                   {"run.dir=" + dir, "train.max_steps=3", "train.warmup_ratio=0", "train.eval_every=0", "ckpt.every=0",
                    "lora.enabled=false", "train.lr=0.003", "data.limit=96", "run.log_level=warn"});
  return LoadConfig(std::string(DFAR_SOURCE_DIR) + "/configs/tiny-lora-lr.yaml", overrides);
}

struct RunResult {
  TrainSummary summary;
  std::map<std::string, torch::Tensor> params;
};

RunResult Train(const Config& config, Communicator& comm) {
  TrainOptions options;
  options.overwrite = true;
  options.watchdog = false;  // One communicator trains many times in this test.
  RunResult r;
  r.summary = RunTraining(config, options, comm);
  auto model = LoadTrainedModel(r.summary.last_checkpoint, nullptr);
  for (const auto& p : model.decoder->named_parameters()) r.params[p.key()] = p.value().detach().clone();
  return r;
}

double MaxDiff(const RunResult& a, const RunResult& b) {
  double worst = 0;
  for (const auto& [name, t] : a.params) worst = std::max(worst, (t - b.params.at(name)).abs().max().item<double>());
  return worst;
}

// The same config on one rank (this process alone) with micro_batch scaled up.
RunResult TrainAlone(const std::string& name, std::vector<std::string> overrides, Communicator& comm) {
  auto single = MakeSingleCommunicator();
  const std::string dir = SharedRunDir(comm, name) + "-alone-r" + std::to_string(comm.rank());
  return Train(TinyConfig(dir, std::move(overrides)), *single);
}

TEST(TrainMpiTest, RanksTimesBatchEqualsOneBigBatchForBothObjectives) {
  Communicator& comm = *testing::GlobalComm();
  for (const std::string objective : {"l", "lr"}) {
    const std::vector<std::string> common = {"prompt.objective=" + objective};
    auto o = common;
    o.push_back("sampler.micro_batch=2");
    const RunResult dist = Train(TinyConfig(SharedRunDir(comm, "dp-" + objective), o), comm);
    auto big = common;
    big.push_back("sampler.micro_batch=" + std::to_string(2 * comm.size()));
    const RunResult alone = TrainAlone("dp-" + objective, big, comm);
    EXPECT_LE(MaxDiff(dist, alone), 1e-5) << "objective " << objective;
    EXPECT_NEAR(dist.summary.final_loss, alone.summary.final_loss, 1e-5);
  }
}

TEST(TrainMpiTest, AccumulationEqualsOneBatchOfTwiceTheSize) {
  Communicator& comm = *testing::GlobalComm();
  const RunResult accum =
      Train(TinyConfig(SharedRunDir(comm, "accum"), {"sampler.micro_batch=1", "train.grad_accum=2"}), comm);
  const RunResult one = Train(TinyConfig(SharedRunDir(comm, "noaccum"), {"sampler.micro_batch=2"}), comm);
  EXPECT_LE(MaxDiff(accum, one), 1e-5);
}

TEST(TrainMpiTest, ZeroStagesEqualPlainDataParallel) {
  Communicator& comm = *testing::GlobalComm();
  const RunResult plain = Train(TinyConfig(SharedRunDir(comm, "z0"), {"lora.enabled=true", "dist.zero=0"}), comm);
  for (int z : {1, 2}) {
    const RunResult zero = Train(TinyConfig(SharedRunDir(comm, "z" + std::to_string(z)),
                                            {"lora.enabled=true", "dist.zero=" + std::to_string(z)}),
                                 comm);
    EXPECT_LE(MaxDiff(plain, zero), 1e-5) << "ZeRO " << z;
  }
}

TEST(TrainMpiTest, TinyBucketsEqualOneBucket) {
  Communicator& comm = *testing::GlobalComm();
  const RunResult many = Train(TinyConfig(SharedRunDir(comm, "tiny-buckets"), {"dist.bucket_mb=0.01"}), comm);
  const RunResult one = Train(TinyConfig(SharedRunDir(comm, "one-bucket"), {"dist.bucket_mb=512"}), comm);
  EXPECT_LE(MaxDiff(many, one), 1e-5);
}

TEST(TrainMpiTest, GlobalGradNormIsEqualOnEveryRankAndToTheSingleProcessNorm) {
  Communicator& comm = *testing::GlobalComm();
  for (const std::string zero : {"0", "2"}) {
    const std::vector<std::string> o = {"train.grad_clip=0.05", "dist.zero=" + zero};
    auto mine = o;
    mine.push_back("sampler.micro_batch=2");
    const RunResult dist = Train(TinyConfig(SharedRunDir(comm, "norm" + zero), mine), comm);
    const auto norms = comm.AllGatherBytes(std::to_string(dist.summary.last_grad_norm));
    for (const auto& n : norms) EXPECT_EQ(n, norms[0]) << "ZeRO " << zero;
    auto big = o;
    big.push_back("sampler.micro_batch=" + std::to_string(2 * comm.size()));
    const RunResult alone = TrainAlone("norm" + zero, big, comm);
    EXPECT_NEAR(dist.summary.last_grad_norm, alone.summary.last_grad_norm, 1e-5);
    EXPECT_LE(MaxDiff(dist, alone), 1e-5) << "clipped runs, ZeRO " << zero;
  }
}

std::vector<double> MetricLosses(const std::string& run_dir) {
  std::vector<double> losses;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) losses.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return losses;
}

// Turns a finished run dir into the state of a run stopped after `step`.
void RewindRunDir(const std::string& dir, int64_t step, int64_t last_step, Communicator& comm) {
  comm.Barrier();
  if (comm.rank() == 0) {
    char name[32];
    std::snprintf(name, sizeof(name), "step-%08lld", static_cast<long long>(last_step));
    fs::remove_all(fs::path(dir) / "checkpoints" / name);
    std::snprintf(name, sizeof(name), "step-%08lld", static_cast<long long>(step));
    std::ofstream(fs::path(dir) / "checkpoints" / "latest") << name << "\n";
    auto losses = MetricLosses(dir);
    std::ifstream in(fs::path(dir) / "metrics.jsonl");
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    std::ofstream out(fs::path(dir) / "metrics.jsonl", std::ios::trunc);
    for (int64_t i = 0; i < step; ++i) out << lines[static_cast<size_t>(i)] << "\n";
  }
  comm.Barrier();
}

TEST(TrainMpiTest, ResumeIsBitIdenticalToAnUninterruptedRun) {
  Communicator& comm = *testing::GlobalComm();
  const std::vector<std::string> o = {"train.max_steps=6", "ckpt.every=3", "ckpt.keep_last=0",      "lora.enabled=true",
                                      "lora.dropout=0.1",  "dist.zero=1",  "train.warmup_ratio=0.3"};
  const std::string full_dir = SharedRunDir(comm, "resume-full");
  const RunResult full = Train(TinyConfig(full_dir, o), comm);
  // A second run, stopped after step 3, then resumed.
  const std::string dir = SharedRunDir(comm, "resume-split");
  Train(TinyConfig(dir, o), comm);
  RewindRunDir(dir, 3, 6, comm);
  TrainOptions resume;
  resume.resume = true;
  resume.watchdog = false;
  const TrainSummary s = RunTraining(TinyConfig(dir, o), resume, comm);
  auto model = LoadTrainedModel(s.last_checkpoint, nullptr);
  for (const auto& p : model.decoder->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), full.params.at(p.key()))) << p.key();
  EXPECT_EQ(MetricLosses(dir), MetricLosses(full_dir));
}

}  // namespace
}  // namespace dfar

DFAR_MPI_TEST_MAIN
