// bench_gradsync — dfar's gradient synchronisation (GradientSync over
// FlatParameters' buckets) against one raw MPI_Allreduce of the same bytes,
// and how much of the sync backward hides. SmolLM2-135M, full fine-tuning,
// fp32, under `mpirun -np 2 ... --threads 1`.
//
// What it measures:
//  1. Bucket sweep. Real local gradients (one forward/backward of this rank's
//     rows of the deterministic batch; rank r uses global rows r*B.., so the
//     ranks' gradients differ) are laid out in FlatParameters with bucket
//     sizes 1..128 MB and "all" (one bucket). Timed: GradientSync itself,
//     BeginBackward(true) + Finish() with no backward, so Finish launches every
//     bucket in bucket order and waits (the launches backward would make,
//     back to back). Baseline: one MPI_Allreduce (MPI_IN_PLACE, MPI_FLOAT,
//     MPI_SUM) of a copy of the same buffer. Both start after a barrier;
//     median of the timed reps after one warm-up, slowest rank.
//     ratio = t_raw / t_dfar (goal >= 0.95 at dist.bucket_mb's default).
//  2. Overlap. forward + backward + Finish with sync on (buckets launch from
//     the gradient hooks during backward) vs off (BeginBackward(false): no
//     collectives), and the sync alone; hidden fraction =
//     1 - (t_with - t_without) / t_sync_alone, clipped to [0, 1].
//
// Why: bucketing and the progress thread must cost next to nothing over a
// single MPI call, and overlap is the reason they exist.
//
// Correctness: after every dfar sync the gradients equal the raw
// MPI_Allreduce of the same local gradients (max relative error <= 1e-6;
// with two ranks each element is a + b, so they are normally identical).
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "dfar/comm/communicator.h"
#include "dfar/core/config.h"
#include "dfar/core/error.h"
#include "dfar/data/collate.h"
#include "dfar/model/pretrained.h"
#include "dfar/train/flat_params.h"
#include "dfar/train/grad_sync.h"
#include "dfar/train/loss.h"
#include "harness.h"
#include "torch_meta.h"

namespace {

using dfar::bench::Args;
using dfar::bench::Report;
using Named = std::vector<std::pair<std::string, torch::Tensor>>;

const char* const kDefaultModel = ".cache/models/smollm2-135m-instruct.gguf";
const char* const kUsage =
    "mpirun -np 2 -x OMP_NUM_THREADS=1 bench_gradsync [--threads N] [--batch B] [--seq T] [--reps N]\n"
    "       [--model GGUF] [--quick] [--json FILE]\n"
    "Gradient sync of SmolLM2-135M (fp32): dfar GradientSync per bucket size vs one raw MPI_Allreduce,\n"
    "and the share of the sync hidden behind backward. Needs at least 2 ranks.";
constexpr double kMaxRelError = 1e-6;

// bench_step's deterministic batch (benchmarks/step/step_util.cpp): global
// row g = rank * B + b; labels are the next id in the second half of a row.
struct GradBatch {
  dfar::BatchTensors tensors;
  double global_supervised = 0;
};

GradBatch MakeBatch(int rank, int world, int64_t rows, int64_t cols, int64_t vocab) {
  auto ids = torch::empty({rows, cols}, torch::kLong);
  auto labels = torch::full({rows, cols}, static_cast<int64_t>(dfar::kIgnoreIndex), torch::kLong);
  auto id = ids.accessor<int64_t, 2>();
  auto label = labels.accessor<int64_t, 2>();
  for (int64_t b = 0; b < rows; ++b) {
    const int64_t g = rank * rows + b;
    for (int64_t t = 0; t < cols; ++t) id[b][t] = (17 + 1009 * g + 31 * t + 7 * ((g * t) % 13)) % vocab;
    for (int64_t t = cols / 2; t + 1 < cols; ++t) label[b][t] = id[b][t + 1];
  }
  GradBatch batch;
  batch.tensors.input_ids = ids;
  batch.tensors.labels = labels;
  batch.global_supervised = static_cast<double>(world * rows * (cols - 1 - cols / 2));
  return batch;
}

// SmolLM2 wired as the trainer wires it for full fine-tuning (ZeRO 0).
struct GradModel {
  dfar::PretrainedModel model;
  Named named;
  std::unique_ptr<dfar::FlatParameters> flat;
  std::unique_ptr<dfar::GradientSync> sync;
};

std::unique_ptr<GradModel> BuildModel(const std::string& path, dfar::Communicator& comm) {
  auto g = std::make_unique<GradModel>();
  g->model = dfar::LoadPretrained(path, false);
  g->model.decoder->train();
  std::vector<torch::Tensor> tensors;
  for (const auto& p : g->model.decoder->named_parameters()) {
    g->named.emplace_back(p.key(), p.value());
    tensors.push_back(p.value());
  }
  g->flat = std::make_unique<dfar::FlatParameters>(
      g->named, dfar::FlatLayout{comm.size(), comm.rank(), dfar::DistConfig{}.bucket_mb, /*zero=*/0});
  comm.Broadcast(g->flat->data().data_ptr(), static_cast<size_t>(g->flat->data().nbytes()), dfar::DType::kUInt8, 0);
  g->sync = std::make_unique<dfar::GradientSync>(*g->flat, comm, tensors);
  return g;
}

// Zeroed gradients, then forward + backward (+ the sync when `sync`).
void ForwardBackward(GradModel& g, const GradBatch& batch, bool sync) {
  g.flat->grad().zero_();
  g.sync->BeginBackward(sync);
  auto ce = dfar::SupervisedCrossEntropySum(g.model.decoder, batch.tensors);
  (ce / batch.global_supervised).backward();
  g.sync->Finish();
}

void RawAllReduce(torch::Tensor& buf) {
  const int rc = MPI_Allreduce(MPI_IN_PLACE, buf.data_ptr<float>(), static_cast<int>(buf.numel()), MPI_FLOAT, MPI_SUM,
                               MPI_COMM_WORLD);
  DFAR_CHECK(rc == MPI_SUCCESS, "MPI_Allreduce failed with code ", rc);
}

double MaxRelError(const torch::Tensor& got, const torch::Tensor& want) {
  const double scale = std::max(want.abs().max().item<double>(), 1e-30);
  return (got - want).abs().max().item<double>() / scale;
}

// Seconds of fn() after a barrier.
template <typename Fn>
double TimeAfterBarrier(dfar::Communicator& comm, Fn&& fn) {
  comm.Barrier();
  const double t0 = dfar::bench::Now();
  fn();
  return dfar::bench::Now() - t0;
}

// Median over ranks' medians: the slowest rank's median.
double SlowestMedian(const std::vector<double>& xs, dfar::Communicator& comm) {
  double m = dfar::bench::Median(xs);
  comm.AllReduce(&m, 1, dfar::DType::kFloat64, dfar::ReduceOp::kMax);
  return m;
}

struct BucketResult {
  int64_t buckets = 0;
  double mbytes = 0, t_dfar = 0, t_raw = 0, max_rel = 0;
};

// One bucket size: fresh leaf tensors carry the model's local gradients, so
// this GradientSync's hooks live and die with them.
BucketResult MeasureBucket(const Named& model, double bucket_mb, int reps, dfar::Communicator& comm) {
  Named named;
  std::vector<torch::Tensor> leaves;
  for (const auto& [name, p] : model) {
    leaves.push_back(torch::empty_like(p).requires_grad_(true));
    named.emplace_back(name, leaves.back());
  }
  dfar::FlatParameters flat(named, dfar::FlatLayout{comm.size(), comm.rank(), bucket_mb, /*zero=*/0});
  dfar::GradientSync sync(flat, comm, leaves);
  {
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < model.size(); ++k) {
      const auto& e = flat.entries()[k];
      flat.grad().narrow(0, e.offset, e.numel).copy_(model[k].second.grad().reshape(-1));
    }
  }
  const torch::Tensor local = flat.grad().clone();
  torch::Tensor raw = torch::empty_like(local);
  std::vector<double> t_dfar, t_raw;
  for (int i = 0; i <= reps; ++i) {
    raw.copy_(local);
    const double r = TimeAfterBarrier(comm, [&] { RawAllReduce(raw); });
    flat.grad().copy_(local);
    const double d = TimeAfterBarrier(comm, [&] {
      sync.BeginBackward(true);
      sync.Finish();
    });
    if (i == 0) continue;  // Warm-up.
    t_raw.push_back(r);
    t_dfar.push_back(d);
  }
  BucketResult res;
  res.buckets = static_cast<int64_t>(flat.buckets().size());
  res.mbytes = static_cast<double>(local.nbytes()) / (1024.0 * 1024.0);
  res.t_raw = SlowestMedian(t_raw, comm);
  res.t_dfar = SlowestMedian(t_dfar, comm);
  res.max_rel = MaxRelError(flat.grad(), raw);
  comm.AllReduce(&res.max_rel, 1, dfar::DType::kFloat64, dfar::ReduceOp::kMax);
  return res;
}

struct OverlapResult {
  double t_without = 0, t_with = 0, t_alone = 0, max_rel = 0;
  double hidden() const { return std::clamp(1.0 - (t_with - t_without) / t_alone, 0.0, 1.0); }
};

// Interleaved reps of: no sync, sync during backward, sync alone.
OverlapResult MeasureOverlap(GradModel& g, const GradBatch& batch, int reps, dfar::Communicator& comm) {
  std::vector<double> without, with, alone;
  for (int i = 0; i <= reps; ++i) {
    const double a = TimeAfterBarrier(comm, [&] { ForwardBackward(g, batch, false); });
    const double b = TimeAfterBarrier(comm, [&] { ForwardBackward(g, batch, true); });
    const double c = TimeAfterBarrier(comm, [&] {
      g.sync->BeginBackward(true);
      g.sync->Finish();
    });
    if (i == 0) continue;  // Warm-up.
    without.push_back(a);
    with.push_back(b);
    alone.push_back(c);
  }
  OverlapResult r{SlowestMedian(without, comm), SlowestMedian(with, comm), SlowestMedian(alone, comm), 0};
  // Check: gradients synced during backward == raw all-reduce of local ones.
  ForwardBackward(g, batch, false);
  torch::Tensor want = g.flat->grad().clone();
  comm.Barrier();
  RawAllReduce(want);
  ForwardBackward(g, batch, true);
  r.max_rel = MaxRelError(g.flat->grad(), want);
  comm.AllReduce(&r.max_rel, 1, dfar::DType::kFloat64, dfar::ReduceOp::kMax);
  return r;
}

std::string FormatMb(double mb) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", mb);
  return buf;
}

// Returns the bucket size with the best ratio; fills ratio_at_default.
std::string RunSweep(Report& report, GradModel& g, int reps, dfar::Communicator& comm, double* ratio_at_default) {
  report.Begin({{"bucket_mb", 9},
                {"buckets", 7},
                {"mbytes", 8, 1},
                {"dfar_ms", 9, 2},
                {"raw_ms", 9, 2},
                {"ratio", 6, 3},
                {"dfar_GBps", 9, 2},
                {"max_rel_err", 11, 8}});
  const double total_mb = static_cast<double>(g.flat->grad().nbytes()) / (1024.0 * 1024.0);
  const std::vector<std::pair<std::string, double>> sizes = {{"1", 1},   {"4", 4},     {"16", 16},           {"32", 32},
                                                             {"64", 64}, {"128", 128}, {"all", total_mb + 1}};
  const std::string default_mb = FormatMb(dfar::DistConfig{}.bucket_mb);
  std::string best;
  double best_ratio = -1;
  for (const auto& [label, mb] : sizes) {
    const BucketResult r = MeasureBucket(g.named, mb, reps, comm);
    const double ratio = r.t_raw / r.t_dfar;
    report.Row({label, r.buckets, r.mbytes, 1e3 * r.t_dfar, 1e3 * r.t_raw, ratio, r.mbytes * 1.048576e-3 / r.t_dfar,
                r.max_rel},
               r.max_rel <= kMaxRelError);
    if (label == default_mb) *ratio_at_default = ratio;
    if (ratio > best_ratio) {
      best_ratio = ratio;
      best = label;
    }
  }
  return best;
}

double RunOverlap(Report& report, GradModel& g, const GradBatch& batch, int reps, dfar::Communicator& comm) {
  const OverlapResult r = MeasureOverlap(g, batch, reps, comm);
  report.Begin({{"case", 10},
                {"batch", 5},
                {"seq", 5},
                {"no_sync_ms", 10, 1},
                {"sync_ms", 10, 1},
                {"sync_alone_ms", 13, 1},
                {"hidden", 6, 3},
                {"max_rel_err", 11, 8}});
  report.Row({std::string("overlap"), batch.tensors.input_ids.size(0), batch.tensors.input_ids.size(1),
              1e3 * r.t_without, 1e3 * r.t_with, 1e3 * r.t_alone, r.hidden(), r.max_rel},
             r.max_rel <= kMaxRelError);
  if (r.t_without < 2 * r.t_alone)
    report.Note("forward+backward is under 2x the sync alone: raise --batch/--seq for a fuller overlap test");
  return r.hidden();
}

int Run(const Args& args) {
  auto comm = dfar::MakeHostCommunicator();
  DFAR_CHECK(comm->size() >= 2, "bench_gradsync needs at least 2 ranks: mpirun -np 2 ... bench_gradsync");
  torch::set_num_threads(static_cast<int>(args.GetInt("threads", 1)));
  const std::string model_path = args.Get("model", kDefaultModel);
  const int reps = static_cast<int>(args.GetInt("reps", args.quick ? 2 : 5));
  Report report("gradsync", args, comm->rank(), comm->size());
  dfar::bench::AddTorchMeta(report);
  report.Meta("model", model_path + " (fp32, full fine-tuning)");
  report.Meta("mpi_threading", "MPI_THREAD_SERIALIZED (dfar's progress thread; raw calls made while it idles)");

  auto g = BuildModel(model_path, *comm);
  const auto batch = MakeBatch(comm->rank(), comm->size(), args.GetInt("batch", 1), args.GetInt("seq", 64),
                               g->model.decoder->config().vocab_size);
  ForwardBackward(*g, batch, false);  // This rank's own gradients for the sweep.
  double ratio_at_default = 0;
  const std::string best = RunSweep(report, *g, reps, *comm, &ratio_at_default);
  report.Note("ratio = raw_ms / dfar_ms (>1: dfar faster); median of " + std::to_string(reps) +
              " reps after 1 warm-up, barrier before each, slowest rank; GBps = buffer bytes / dfar time");
  const double hidden = RunOverlap(report, *g, batch, reps, *comm);
  report.Note("hidden = 1 - (sync_ms - no_sync_ms) / sync_alone_ms, clipped to [0, 1]");
  report.Summary("default_bucket_mb", dfar::DistConfig{}.bucket_mb);
  report.Summary("ratio_at_default", ratio_at_default);
  report.Summary("ratio_goal", 0.95);
  report.Summary("best_bucket_mb", best);
  report.Summary("hidden_fraction", hidden);
  return report.Finish();
}

}  // namespace

int main(int argc, char** argv) {
  return dfar::bench::Main(argc, argv, kUsage, Run);
}
