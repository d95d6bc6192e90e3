// The distributed-training invariants, under mpirun -np 2 (OMP_NUM_THREADS=1):
// N ranks x batch B == 1 rank x batch N*B, accumulation, bucket size and
// the global gradient norm, on CPU in fp32 (ZeRO stages: zero_mpitest.cpp).
//
// What is compared, and why these tolerances hold on every x86-64 CPU
// (AVX2 and AVX-512 kernels round differently, and a test tuned on one
// must not fail on the other):
//
// * Data parallelism changes the order in which the same products are
//   summed: per-rank partial sums then an all-reduce, against one sum over
//   the big batch; and padded lengths differ, so GEMM kernels block
//   differently. Each reduction of n terms then carries a relative error of
//   about sqrt(n)*u (typical; n*u worst case, Higham 2002, sec. 4.2), with
//   u = 2^-24 = 6e-8 for fp32. The longest reductions here are over a batch's
//   tokens (n <= 8 x 192 = 1536) and over hidden and vocab sizes (<= 512),
//   so one op contributes <= sqrt(1536)*u = 2.4e-6, and a forward + backward
//   pass of the 2-layer model chains about a dozen such ops per parameter
//   path: ~3e-5 in the worst plausible case. kRelTol = 1e-4 leaves a margin
//   of 3x over that and is still ~10^3 below what a real bug gives (a missed
//   rank's share or a wrong normaliser moves gradients by >= 10%).
//   The comparison is norm-wise over all elements (||a-b|| / ||b||): a
//   per-element relative error is unbounded where cancellation makes an
//   element ~0, and an absolute one depends on the gradients' scale.
// * Loss and gradients are compared at the first step, before any update
//   can feed differences back.
// * After k steps, parameters are compared through their updates p_k - p_0
//   with plain SGD: its update is linear in the gradients, so the relative
//   error of the summed updates stays that of the gradients (the k = 3
//   steps at lr 0.003 move parameters by ~1%, too little for the
//   gradients' dependence on them to amplify anything). The subtraction
//   p_k - p_0 of numbers ~100x larger than their difference costs ~2 digits:
//   ~100*u = 6e-6 is to be expected there (measured 1e-6 to 2.2e-6, with
//   gradients at 1.2e-7 to 1.6e-7, on an AVX-512 CPU). AdamW divides by
//   sqrt(v), which turns rounding noise in tiny gradients into updates of
//   size lr: that is why comparing AdamW parameters with an absolute 1e-5
//   failed on an AVX2 CPU (1.19e-5). AdamW itself is checked against
//   torch.optim.AdamW in tests/train/optimizer_test.cpp.
// * Where the compared runs do the same arithmetic except for a common
//   gradient scale (ZeRO stages and bucket sizes at np 2: every element is
//   reduced by the same two-operand sum, which is commutative; only the clip
//   coefficient's last bits differ), AdamW is kept and parameters must agree
//   to 1e-5: Adam is invariant to a common scale up to eps, so they differ by
//   ~k*lr*u, far below it.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "dfar/core/config.h"
#include "dfar/core/error.h"
#include "dfar/core/faults.h"
#include "dfar/train/trained_model.h"
#include "dfar/train/trainer.h"
#include "mpi_test_main.h"
#include "train_run.h"

namespace dfar {
namespace {

namespace fs = std::filesystem;

using Tensors = std::map<std::string, torch::Tensor>;

// ||a - b|| / ||b|| over all elements of all tensors.
double RelativeError(const Tensors& a, const Tensors& b) {
  double diff = 0, ref = 0;
  for (const auto& [name, t] : b) {
    EXPECT_EQ(a.count(name), 1u) << name;
    if (a.count(name) == 0) return 1e30;
    diff += (a.at(name).to(torch::kDouble) - t.to(torch::kDouble)).pow(2).sum().item<double>();
    ref += t.to(torch::kDouble).pow(2).sum().item<double>();
  }
  return std::sqrt(diff / std::max(ref, 1e-300));
}

Tensors Minus(const Tensors& a, const Tensors& b) {
  Tensors out;
  for (const auto& [name, t] : a) out[name] = t - b.at(name);
  return out;
}

constexpr double kRelTol = 1e-4;  // Derived at the top of this file.

// The same config on one rank (this process alone) with micro_batch scaled up.
RunResult TrainAlone(const std::string& name, std::vector<std::string> overrides, Communicator& comm) {
  auto single = MakeSingleCommunicator();
  const std::string dir = SharedRunDir(comm, name) + "-alone-r" + std::to_string(comm.rank());
  return Train(TinyConfig(dir, std::move(overrides)), *single);
}

// The parameters before any update: one SGD step at lr 0 (LoRA init included).
Tensors InitialParams(const std::string& name, std::vector<std::string> overrides, Communicator& comm) {
  overrides.push_back("train.optimizer=sgd");
  overrides.push_back("train.lr=0");
  overrides.push_back("train.max_steps=1");
  return TrainAlone(name + "-p0", overrides, comm).params;
}

// First-step loss and gradients, then the SGD updates after 3 steps.
void ExpectSameTraining(const RunResult& got, const RunResult& want, const Tensors& p0, const std::string& what) {
  EXPECT_LE(std::abs(got.first_loss - want.first_loss), kRelTol * std::abs(want.first_loss)) << what;
  ASSERT_FALSE(want.first_grads.empty()) << what;
  const double grads = RelativeError(got.first_grads, want.first_grads);
  EXPECT_LE(grads, kRelTol) << what << ": first-step gradients";
  const double updates = RelativeError(Minus(got.params, p0), Minus(want.params, p0));
  EXPECT_LE(updates, kRelTol) << what << ": parameter updates after " << want.summary.steps << " SGD steps";
  std::printf("[ %s ] first-step gradient rel. error %.2e, update rel. error %.2e (tolerance %.0e)\n", what.c_str(),
              grads, updates, kRelTol);
}

TEST(TrainMpiTest, RanksTimesBatchEqualsOneBigBatchForBothObjectives) {
  Communicator& comm = *testing::GlobalComm();
  for (const std::string objective : {"l", "lr"}) {
    const std::vector<std::string> common = {"prompt.objective=" + objective, "train.optimizer=sgd"};
    auto o = common;
    o.push_back("sampler.micro_batch=2");
    const RunResult dist = Train(TinyConfig(SharedRunDir(comm, "dp-" + objective), o), comm);
    auto big = common;
    big.push_back("sampler.micro_batch=" + std::to_string(2 * comm.size()));
    const RunResult alone = TrainAlone("dp-" + objective, big, comm);
    ExpectSameTraining(dist, alone, InitialParams("dp-" + objective, big, comm), "objective " + objective);
  }
}

TEST(TrainMpiTest, AccumulationEqualsOneBatchOfTwiceTheSize) {
  Communicator& comm = *testing::GlobalComm();
  const std::vector<std::string> sgd = {"train.optimizer=sgd"};
  auto a = sgd, b = sgd;
  a.insert(a.end(), {"sampler.micro_batch=1", "train.grad_accum=2"});
  b.push_back("sampler.micro_batch=2");
  const RunResult accum = Train(TinyConfig(SharedRunDir(comm, "accum"), a), comm);
  const RunResult one = Train(TinyConfig(SharedRunDir(comm, "noaccum"), b), comm);
  ExpectSameTraining(accum, one, InitialParams("accum", b, comm), "grad_accum 2");
}

TEST(TrainMpiTest, TinyBucketsEqualOneBucket) {
  Communicator& comm = *testing::GlobalComm();
  const RunResult many = Train(TinyConfig(SharedRunDir(comm, "tiny-buckets"), {"dist.bucket_mb=0.01"}), comm);
  const RunResult one = Train(TinyConfig(SharedRunDir(comm, "one-bucket"), {"dist.bucket_mb=512"}), comm);
  // AdamW kept: bucketing regroups the same elementwise sums (see the top).
  EXPECT_LE(MaxDiff(many, one), 1e-5);
}

TEST(TrainMpiTest, GlobalGradNormIsEqualOnEveryRankAndToTheSingleProcessNorm) {
  Communicator& comm = *testing::GlobalComm();
  for (const std::string zero : {"0", "2"}) {
    const std::vector<std::string> o = {"train.grad_clip=0.05", "dist.zero=" + zero, "train.optimizer=sgd"};
    auto mine = o;
    mine.push_back("sampler.micro_batch=2");
    const RunResult dist = Train(TinyConfig(SharedRunDir(comm, "norm" + zero), mine), comm);
    const auto norms = comm.AllGatherBytes(std::to_string(dist.summary.last_grad_norm));
    for (const auto& n : norms) EXPECT_EQ(n, norms[0]) << "ZeRO " << zero;
    auto big = o;
    big.push_back("sampler.micro_batch=" + std::to_string(2 * comm.size()));
    const RunResult alone = TrainAlone("norm" + zero, big, comm);
    EXPECT_LE(std::abs(dist.summary.last_grad_norm - alone.summary.last_grad_norm),
              kRelTol * alone.summary.last_grad_norm);
    const Tensors p0 = InitialParams("norm" + zero, big, comm);
    const double updates = RelativeError(Minus(dist.params, p0), Minus(alone.params, p0));
    EXPECT_LE(updates, kRelTol) << "clipped SGD runs, ZeRO " << zero;
  }
}

// Makes the loss of the listed (0-based) steps NaN on this rank.
class PoisonSteps : public FaultInjector {
 public:
  explicit PoisonSteps(std::vector<int64_t> steps) : steps_(std::move(steps)) {}
  bool PoisonStep(int64_t step) override { return std::find(steps_.begin(), steps_.end(), step) != steps_.end(); }

 private:
  std::vector<int64_t> steps_;
};

TEST(TrainMpiTest, NonFiniteStepIsSkippedOnEveryRankAndCounted) {
  Communicator& comm = *testing::GlobalComm();
  PoisonSteps poison({2});  // The third step diverges.
  ScopedFaults scoped(&poison);
  const RunResult r = Train(TinyConfig(SharedRunDir(comm, "nan-skip"), {"train.max_steps=5"}), comm);
  EXPECT_EQ(r.summary.steps, 5);
  EXPECT_EQ(r.summary.skipped_steps, 1);
  for (const auto& [name, t] : r.params) EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << name;
}

TEST(TrainMpiTest, ConsecutiveNonFiniteStepsAbortOnEveryRank) {
  Communicator& comm = *testing::GlobalComm();
  PoisonSteps poison({1, 2, 3});
  ScopedFaults scoped(&poison);
  const Config c = TinyConfig(SharedRunDir(comm, "nan-abort"), {"train.max_steps=8", "train.max_consecutive_skips=3"});
  TrainOptions options;
  options.overwrite = true;
  options.watchdog = false;
  try {
    RunTraining(c, options, comm);
    ADD_FAILURE() << "three poisoned steps in a row did not abort";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("3 consecutive steps had a non-finite loss"), std::string::npos) << e.message();
  }
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
