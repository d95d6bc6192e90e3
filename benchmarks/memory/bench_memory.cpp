// bench_memory — what one rank holds for training, by ZeRO stage.
//
// What it measures: for ZeRO 0, 1, 2 and 3 on this run's ranks, the bytes a
// rank keeps between steps for the trainable parameters, their gradients
// and the optimizer state (AdamW moments, fp32 masters for bf16), read from
// the tensors' storage (FlatParameters::parameter_bytes and gradient_bytes,
// AdamW::state_bytes: this CPU build has no allocator statistics), the
// transient peaks inside a step (gradient staging of ZeRO 2/3, gathered
// layers of ZeRO 3), and the median step time. For ZeRO 3 also the seconds
// the step waited for parameter gathers against the seconds the same
// gathers take back to back without compute: the share hidden behind it.
// The largest value over ranks is reported.
//
// Why: memory per rank is what bounds the model size on a cluster, and the
// point of each stage is to divide a part of it by the number of ranks.
// `ratio_to_zero0` divides each row's persistent bytes by ZeRO 0's at the
// same world size, which equal one rank's bytes without sharding (ZeRO 0
// replicates everything; only padding depends on the world size); the ideal
// is 1/N of what the stage shards.
//
// Correctness: every stage's losses equal ZeRO 0's to 1e-5 relative (the
// same model, batches and updates; only the association of the ranks' sums
// differs), and every loss is finite.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "dfar/core/error.h"
#include "dfar/model/pretrained.h"
#include "dfar/train/step_engine.h"
#include "harness.h"
#include "step_util.h"
#include "torch_meta.h"

namespace {

using dfar::bench::Args;
using dfar::bench::Report;

const char* const kDefaultModel = ".cache/models/smollm2-135m-instruct.gguf";
const char* const kUsage =
    "bench_memory [--model GGUF] [--batch B] [--seq T] [--steps N] [--quick] [--json FILE]\n"
    "Per-rank bytes of parameters, gradients and optimizer state for ZeRO 0-3 (full fine-tuning,\n"
    "fp32, one thread per rank). --quick: the tiny random Llama.";

struct StageResult {
  double param_mb = 0, grad_mb = 0, optim_mb = 0, staging_peak_mb = 0, gathered_peak_mb = 0;
  double step_s = 0, gather_wait_s = 0, gather_alone_s = 0;
  std::vector<double> losses;
};

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

dfar::PretrainedModel LoadModel(const std::string& path, bool quick) {
  auto model = quick ? dfar::bench::MakeTinyLlama() : dfar::LoadPretrained(path, false);
  model.decoder->train();
  return model;
}

// The same gathers as one ZeRO-3 step's forward and backward (every bucket
// twice, the root once), back to back with no compute in between.
double GathersAlone(dfar::StepEngine& engine, int reps) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 2 * reps; ++i) {
    engine.GatherAllParameters();
    engine.ReleaseAllParameters();
  }
  return Seconds(start) / reps;
}

StageResult RunStage(int zero, const Args& args, dfar::Communicator& comm) {
  auto model = LoadModel(args.Get("model", kDefaultModel), args.quick);
  dfar::StepEngineOptions o;
  o.zero = zero;
  o.bucket_mb = 8;
  dfar::StepEngine engine(model.decoder, comm, o);
  const int64_t batch = args.GetInt("batch", 1), seq = args.GetInt("seq", args.quick ? 32 : 64);
  const int steps = static_cast<int>(args.GetInt("steps", args.quick ? 2 : 3));
  const auto b = dfar::bench::MakeStepBatch(comm.rank(), batch, seq, model.decoder->config().vocab_size);
  double supervised = b.supervised;
  comm.AllReduce(&supervised, 1, dfar::DType::kFloat64, dfar::ReduceOp::kSum);
  StageResult r;
  std::vector<double> times;
  double wait_before = 0;
  for (int s = 0; s < steps; ++s) {
    if (engine.gather()) wait_before = engine.gather()->wait_seconds();
    const auto start = std::chrono::steady_clock::now();
    engine.ForwardBackward({b.tensors}, supervised);
    const auto step = engine.Update(1e-4, 1.0);
    times.push_back(Seconds(start));
    r.losses.push_back(step.loss);
  }
  r.step_s = dfar::bench::Median(times);
  auto& flat = engine.flat();
  r.param_mb = static_cast<double>(flat.parameter_bytes()) / 1e6;
  r.grad_mb = static_cast<double>(flat.gradient_bytes()) / 1e6;
  r.optim_mb = static_cast<double>(engine.optimizer().state_bytes()) / 1e6;
  r.staging_peak_mb = static_cast<double>(engine.sync().peak_staging_bytes()) / 1e6;
  if (engine.gather()) {
    r.gathered_peak_mb = static_cast<double>(engine.gather()->peak_gathered_bytes()) / 1e6;
    r.gather_wait_s = engine.gather()->wait_seconds() - wait_before;  // The last step's.
    r.gather_alone_s = GathersAlone(engine, 2);
  }
  return r;
}

double MaxOverRanks(double v, dfar::Communicator& comm) {
  comm.AllReduce(&v, 1, dfar::DType::kFloat64, dfar::ReduceOp::kMax);
  return v;
}

bool SameLosses(const std::vector<double>& a, const std::vector<double>& ref) {
  if (a.size() != ref.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!std::isfinite(a[i]) || std::abs(a[i] - ref[i]) > 1e-5 * std::abs(ref[i])) return false;
  return true;
}

int Run(const Args& args) {
  torch::set_num_threads(1);
  auto comm = dfar::MakeHostCommunicator();
  Report report("memory", args, comm->rank(), comm->size());
  dfar::bench::AddTorchMeta(report);
  report.Meta("model", args.quick ? "tiny random Llama" : args.Get("model", kDefaultModel));
  report.Begin({{"zero", 5},
                {"ranks", 6},
                {"param_MB", 10, 1},
                {"grad_MB", 10, 1},
                {"optim_MB", 10, 1},
                {"total_MB", 10, 1},
                {"ratio_to_zero0", 15, 3},
                {"staging_peak_MB", 16, 1},
                {"gathered_peak_MB", 17, 1},
                {"step_s", 8, 3},
                {"gather_hidden", 14, 3}});
  std::vector<double> reference;
  double zero0_total = 0;
  for (int zero = 0; zero <= 3; ++zero) {
    StageResult r = RunStage(zero, args, *comm);
    for (double* v : {&r.param_mb, &r.grad_mb, &r.optim_mb, &r.staging_peak_mb, &r.gathered_peak_mb, &r.step_s,
                      &r.gather_wait_s, &r.gather_alone_s})
      *v = MaxOverRanks(*v, *comm);
    const double total = r.param_mb + r.grad_mb + r.optim_mb;
    if (zero == 0) {
      zero0_total = total;
      reference = r.losses;
    }
    const double hidden = zero == 3 && r.gather_alone_s > 0
                              ? std::clamp(1.0 - r.gather_wait_s / r.gather_alone_s, 0.0, 1.0)
                              : std::nan("");
    report.Row({int64_t{zero}, int64_t{comm->size()}, r.param_mb, r.grad_mb, r.optim_mb, total, total / zero0_total,
                r.staging_peak_mb, r.gathered_peak_mb, r.step_s, hidden},
               SameLosses(r.losses, reference));
    report.Summary("zero" + std::to_string(zero) + "_total_mb", total);
    report.Summary("zero" + std::to_string(zero) + "_step_s", r.step_s);
    if (zero == 3) {
      report.Summary("zero3_gather_hidden_share", hidden);
      report.Summary("zero3_gather_wait_s", r.gather_wait_s);
      report.Summary("zero3_gather_alone_s", r.gather_alone_s);
    }
  }
  report.Note("full fine-tuning in fp32, AdamW; persistent bytes between steps, max over ranks");
  report.Note("gather_hidden: 1 - (seconds a ZeRO-3 step waited on gathers) / (the same gathers back to back)");
  return report.Finish();
}

}  // namespace

int main(int argc, char** argv) {
  return dfar::bench::Main(argc, argv, kUsage, Run);
}
