// bench_step — training-step throughput of dfar, the C++ side of the
// comparison with eager PyTorch and HF transformers+peft (benchmarks/py).
//
// What it measures: the median wall time of one full dfar optimizer step
// (global supervised-token count, forward + loss, backward with overlapped
// gradient sync, Finish, ClipGradNorm(1.0), AdamW, GatherParameters, zeroed
// gradients: the sequence of src/train/trainer.cpp) on a deterministic batch
// that the Python side builds identically, for a tiny random Llama and for
// SmolLM2-135M (full fine-tuning and LoRA, fp32 and bf16).
//
// Why: tokens/s per step is the number users compare frameworks by; the same
// batch, weights (--export writes them for the Python side) and first loss
// make the comparison about speed, not about different work.
//
// Model FLOPs per token (GFLOP/s column), dfar::TrainFlopsPerToken, the count
// the trainer's MFU uses too:
//   full FT: 6 N_matmul + 12 L h T
//   LoRA:    4 N_matmul + 6 N_lora + 12 L h T
// N_matmul counts every projection weight including the LM head (the tied
// embedding matrix for SmolLM2), but not the embedding lookup or norms; a
// frozen weight costs forward + input-gradient only (4 per parameter),
// a trained one also its weight gradient (6). 12 L h T is attention's
// QK^T and AV (forward and backward, no causal halving); it is kept for LoRA
// too because attention's backward runs in full there as well. dfar computes
// LM-head logits only at supervised positions, so its real work is a little
// below this nominal count; the nominal count is what both sides report.
//
// Real rows (the -dfar cases): the first DFAR training examples of the demo's
// L+R config, as many as greedy packing fits into batch x seq, packed the
// way data.packing packs them (span attention per example). --examples
// writes them so that step_hf_peft.py trains on the very same examples,
// batched the HF way (padded to the longest); tokens/s on both sides counts
// the examples' real tokens.
//
// Correctness: every loss finite, and the last loss below the first (each
// step trains on the same batch, so the loss must fall).
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "dfar/core/config.h"
#include "dfar/core/error.h"
#include "dfar/runtime/thread_policy.h"
#if defined(DFAR_WITH_NCCL)
#include "dfar/comm/nccl_communicator.h"
#endif
#include "harness.h"
#include "step_util.h"
#include "torch_meta.h"

namespace {

using dfar::bench::Args;
using dfar::bench::Report;

constexpr double kBf16PeakGflops = 400.0;  // Two cores' bf16 GEMM peak, as stated in the issue.
const char* const kDefaultModel = ".cache/models/smollm2-135m-instruct.gguf";

const char* const kUsage =
    "bench_step [--case NAME] [--device cpu|cuda] [--threads N] [--batch B] [--seq T] [--warmup N]\n"
    "           [--timed N] [--model GGUF] [--export DIR] [--quick] [--json FILE]\n"
    "           [--examples FILE]\n"
    "cases: tiny-full-fp32 smollm2-full-fp32 smollm2-full-bf16 smollm2-lora-fp32 smollm2-lora-bf16\n"
    "       smollm2-lora-dfar-fp32 smollm2-lora-dfar-bf16 (default: all, in this order). --batch is per rank.\n"
    "       The -dfar cases train on real DFAR rows (the demo's L+R config) packed into batch x seq;\n"
    "       --examples FILE writes those examples for the Python baselines. --export DIR writes DIR/tiny-llama and\n"
    "       DIR/smollm2 (HF layout) before timing, for the Python baselines.\n"
    "       --device cuda: each rank on its GPU; the table then adds mfu, model FLOPs over the\n"
    "       device's dense bf16 peak (a table of known GPUs; blank for another).";

struct CaseSpec {
  std::string name;
  bool tiny = false;
  bool lora = false;
  torch::ScalarType dtype = torch::kFloat;
  int64_t batch = 4, seq = 192;
  double lr = 1e-5;
  int warmup = 1, timed = 3;
  bool dfar_rows = false;  // Real DFAR examples, packed (MakeDfarBatch), instead of the synthetic batch.
};

std::vector<CaseSpec> AllCases() {
  return {{"tiny-full-fp32", true, false, torch::kFloat, 4, 128, 1e-3, 3, 30},
          {"smollm2-full-fp32", false, false, torch::kFloat, 4, 192, 1e-5, 1, 2},
          {"smollm2-full-bf16", false, false, torch::kBFloat16, 4, 192, 1e-5, 1, 3},
          {"smollm2-lora-fp32", false, true, torch::kFloat, 4, 192, 2e-4, 1, 3},
          {"smollm2-lora-bf16", false, true, torch::kBFloat16, 4, 192, 2e-4, 1, 3},
          {"smollm2-lora-dfar-fp32", false, true, torch::kFloat, 2, 512, 2e-4, 1, 3, true},
          {"smollm2-lora-dfar-bf16", false, true, torch::kBFloat16, 2, 512, 2e-4, 1, 3, true}};
}

// The cases to run, with --quick and the command-line overrides applied.
std::vector<CaseSpec> SelectCases(const Args& args) {
  const std::string only = args.Get("case", "");
  std::vector<CaseSpec> out;
  for (CaseSpec c : AllCases()) {
    if (!only.empty() && c.name != only) continue;
    if (args.quick) {
      c.warmup = 1;
      c.timed = c.tiny ? 5 : 1;
    }
    c.batch = args.GetInt("batch", c.batch);
    c.seq = args.GetInt("seq", c.seq);
    c.warmup = static_cast<int>(args.GetInt("warmup", c.warmup));
    c.timed = static_cast<int>(args.GetInt("timed", c.timed));
    out.push_back(c);
  }
  DFAR_CHECK(!out.empty(), "unknown --case '", only, "' (see --help)");
  DFAR_CHECK(out.front().timed >= 1 && out.front().warmup >= 0, "--timed must be >= 1 and --warmup >= 0");
  return out;
}

struct CaseResult {
  double step_s = 0;  // Median over timed steps, slowest rank.
  double loss_first = 0, loss_last = 0;
  double flops_per_token = 0;
  int64_t trainable = 0;
  double tokens = 0;  // Real (non-padding) tokens per step, all ranks.
};

// This rank's batch on the host: synthetic, or real DFAR rows (written to
// `examples_path` on rank 0 when one is given).
dfar::bench::StepBatch HostBatch(const CaseSpec& spec, const dfar::PretrainedModel& model,
                                 const std::string& examples_path, dfar::Communicator& comm, double* tokens) {
  *tokens = static_cast<double>(spec.batch * spec.seq);
  if (!spec.dfar_rows)
    return dfar::bench::MakeStepBatch(comm.rank(), spec.batch, spec.seq, model.decoder->config().vocab_size);
  DFAR_CHECK(model.tokenizer != nullptr, "case ", spec.name, ": the model carries no tokenizer");
  auto d = dfar::bench::MakeDfarBatch(*model.tokenizer, comm.rank(), spec.batch, spec.seq);
  *tokens = static_cast<double>(d.real_tokens);
  if (comm.rank() == 0 && !examples_path.empty()) dfar::bench::WriteExamples(d.examples, examples_path);
  return d.batch;
}

CaseResult RunCase(const CaseSpec& spec, const std::string& model_path, const std::string& device,
                   const std::string& examples_path, dfar::Communicator& comm) {
  dfar::PretrainedModel model =
      spec.tiny ? dfar::bench::MakeTinyLlama() : dfar::LoadPretrained(model_path, spec.dfar_rows);
  CaseResult r;
  const auto host_batch = HostBatch(spec, model, examples_path, comm, &r.tokens);
  comm.AllReduce(&r.tokens, 1, dfar::DType::kFloat64, dfar::ReduceOp::kSum);
  dfar::bench::TrainSetup setup;
  setup.lora = spec.lora;
  setup.dtype = spec.dtype;
  setup.bucket_mb = dfar::DistConfig{}.bucket_mb;
  setup.device = device;
  dfar::bench::Trainee trainee(std::move(model), setup, comm);
  const auto batch = trainee.OnDevice(host_batch);
  r.flops_per_token = dfar::TrainFlopsPerToken(trainee.decoder(), spec.seq, /*activation_checkpointing=*/false);
  r.trainable = trainee.trainable();
  std::vector<double> times;
  for (int i = 0; i < spec.warmup + spec.timed; ++i) {
    const double t0 = dfar::bench::Now();
    const double loss = trainee.Step(batch, spec.lr);
    if (i >= spec.warmup) times.push_back(dfar::bench::Now() - t0);
    if (i == 0) r.loss_first = loss;
    r.loss_last = loss;
  }
  r.step_s = dfar::bench::Median(times);
  comm.AllReduce(&r.step_s, 1, dfar::DType::kFloat64, dfar::ReduceOp::kMax);
  return r;
}

// Rank 0 writes the weights the Python baselines load; the others wait.
void ExportModels(const std::string& dir, const std::string& model_path, dfar::Communicator& comm) {
  if (comm.rank() == 0) {
    auto tiny = dfar::bench::MakeTinyLlama();
    dfar::bench::ExportFresh(tiny, dir + "/tiny-llama");
    auto smol = dfar::LoadPretrained(model_path);
    dfar::bench::ExportFresh(smol, dir + "/smollm2");
  }
  comm.Barrier();
}

std::string FormatNumber(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", x);
  return buf;
}

// Dense bf16 peak of this rank's GPU (0: CPU, or a GPU not in the table).
double DevicePeakFlops(const std::string& device) {
  if (device != "cuda") return 0;
#if defined(DFAR_WITH_NCCL)
  return dfar::GetCudaDeviceInfo(0).peak_bf16_flops;
#else
  return 0;
#endif
}

void BeginTable(Report& report) {
  report.Begin({{"case", 18},
                {"ranks", 5},
                {"batch", 5},
                {"seq", 5},
                {"step_ms", 10, 1},
                {"tokens_per_s", 12, 1},
                {"gflops_per_s", 12, 2},
                {"loss_first", 11, 6},
                {"loss_last", 11, 6},
                {"mfu", 6, 3}});
}

// One --case on the CPU runs under the OpenMP wait policy dfar's commands
// choose for its dtype (runtime/thread_policy.h), so its figure is what
// `dfar train` gets; several cases in one process share the policy in force.
void ApplyCaseWaitPolicy(const Args& args) {
  if (!args.kv.count("case") || args.Get("device", "cpu") != "cpu") return;
  for (const CaseSpec& c : AllCases()) {
    if (c.name != args.Get("case", "")) continue;
    dfar::ModelSection m;
    m.device = "cpu";
    m.dtype = c.dtype == torch::kBFloat16 ? "bf16" : "fp32";
    dfar::ApplyWaitPolicy(m);  // May re-execute this benchmark, before MPI starts.
  }
}

int Run(const Args& args) {
  ApplyCaseWaitPolicy(args);
  auto comm = dfar::MakeHostCommunicator();
  torch::set_num_threads(static_cast<int>(args.GetInt("threads", 2)));
  const std::string model_path = args.Get("model", kDefaultModel);
  const std::string device = args.Get("device", "cpu");
  DFAR_CHECK(device == "cpu" || device == "cuda", "--device must be cpu or cuda, not '", device, "'");
  const double peak = DevicePeakFlops(device);
  const auto cases = SelectCases(args);
  Report report("step", args, comm->rank(), comm->size());
  dfar::bench::AddTorchMeta(report);
  report.Meta("model", model_path);
  report.Meta("device", device);
  report.Meta("omp_wait_policy", dfar::WaitPolicyLine());
  report.Meta("bucket_mb", FormatNumber(dfar::DistConfig{}.bucket_mb));
  if (args.kv.count("export")) {
    ExportModels(args.Get("export", ""), model_path, *comm);
    report.Meta("export", args.Get("export", ""));
  }
  BeginTable(report);
  nlohmann::json share = nlohmann::json::object(), flops = nlohmann::json::object(),
                 trainable = nlohmann::json::object();
  for (const auto& spec : cases) {
    const CaseResult r = RunCase(spec, model_path, device, args.Get("examples", ""), *comm);
    const double tokens = r.tokens;
    const double gflops = r.flops_per_token * tokens / r.step_s / 1e9;
    const bool ok = std::isfinite(r.loss_first) && std::isfinite(r.loss_last) && r.loss_last < r.loss_first;
    // MFU per rank: each rank does 1/size of the global tokens on its own GPU.
    const double mfu = peak > 0 ? gflops * 1e9 / comm->size() / peak : std::nan("");
    report.Row({spec.name, int64_t{comm->size()}, spec.batch, spec.seq, 1e3 * r.step_s, tokens / r.step_s, gflops,
                r.loss_first, r.loss_last, mfu},
               ok);
    if (spec.dtype == torch::kBFloat16) share[spec.name] = gflops / kBf16PeakGflops;
    flops[spec.name] = r.flops_per_token;
    trainable[spec.name] = r.trainable;
  }
  report.Note(
      "gflops_per_s = model FLOPs/token x global tokens / step time; FLOPs/token = 6 N_matmul + 12 L h T "
      "(full FT), 4 N_matmul + 6 N_lora + 12 L h T (LoRA); N_matmul includes the LM head, not the embedding");
  report.Note("step_ms: median of timed steps (slowest rank); loss_first: the first step's loss, before any update");
  report.Note(
      "-dfar cases: the demo's L+R training rows packed into batch x seq (data.packing); tokens_per_s "
      "counts their real tokens, not padding slots");
  report.Summary("bf16_peak_gflops", kBf16PeakGflops);
  if (!share.empty()) report.Summary("share_of_peak", share);
  report.Summary("flops_per_token", flops);
  report.Summary("trainable_params", trainable);
  return report.Finish();
}

}  // namespace

int main(int argc, char** argv) {
  dfar::RememberCommandLine(argc, argv);  // For the wait-policy re-execution of one --case.
  return dfar::bench::Main(argc, argv, kUsage, Run);
}
