// bench_generate — greedy decoding speed of dfar::Generate (KV cache) against
// the same greedy loop without a cache, on SmolLM2-135M (GGUF, fp32), batch 1.
//
// What it measures: seconds and tokens/s for exactly --new-tokens (128) new
// tokens after a fixed prompt (prefill included): dfar's Generate with
// ignore_eos, and a "recompute" loop that runs the full forward over prompt +
// generated tokens at every step and takes the last position's logits.
//
// Why: the recompute loop is what a cache-less implementation costs; the
// ratio is the KV cache's speedup. The prompt ids and the cached run's tokens
// go into the JSON summary so the HF `generate` baseline (benchmarks/py) can
// start from the same ids and compare its tokens with dfar's.
//
// The memory-bandwidth bound: decoding one token reads every weight once
// (the tied LM head reads the embedding matrix; a lookup's one row is
// ignored), so tokens/s cannot exceed read bandwidth / weight bytes. The
// bandwidth is measured in the same run, on the same threads, over a 256 MiB
// fp32 tensor (best of 5 after a warm-up): reading it (a sum, one add per
// element, so the loads are the cost) gives the bound; copying it (bytes
// copied per second, the memcpy figure) is reported beside it. Decoding only
// reads weights, so the read figure is the one that bounds it. The KV
// cache's reads (about 1% of the weights' at 150 slots) are left out, so the
// bound is a little optimistic.
//
// Threads: the process runs under the OpenMP wait policy dfar's commands
// pick for fp32 (runtime/thread_policy.h), and Generate picks the decode
// steps' thread count itself (GenerationOptions::decode_threads = 0).
//
// Correctness: both methods produce the same greedy tokens. The cached path
// masks with segment ids (additive mask) and the recompute path uses plain
// causal SDPA, so fp32 rounding may make a late near-tie flip; the check
// therefore requires a matching prefix of at least new_tokens - new_tokens/16
// (120 of 128) tokens and reports its length.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "dfar/core/error.h"
#include "dfar/model/generate.h"
#include "dfar/model/pretrained.h"
#include "dfar/runtime/thread_policy.h"
#include "harness.h"
#include "torch_meta.h"

namespace {

using dfar::bench::Args;
using dfar::bench::Report;

const char* const kDefaultModel = ".cache/models/smollm2-135m-instruct.gguf";
const char* const kPrompt =
    "### Statement: I told my friend the truth even though it hurt her feelings.\n"
    "### Question: Is this ethical or unethical? Explain why.\n"
    "### Answer:";
const char* const kUsage =
    "bench_generate [--threads N] [--new-tokens N] [--reps N] [--model GGUF] [--quick] [--json FILE]\n"
    "Greedy decoding of a fixed prompt, batch 1, fp32: dfar Generate (KV cache) vs full recompute.";

std::vector<int32_t> PromptIds(const dfar::Tokenizer& tok) {
  std::vector<int32_t> ids;
  if (tok.add_bos()) ids.push_back(tok.bos_id());
  const auto text = tok.Encode(kPrompt);
  ids.insert(ids.end(), text.begin(), text.end());
  return ids;
}

std::vector<int32_t> GreedyCached(dfar::PretrainedModel& m, const std::vector<int32_t>& prompt, int64_t n) {
  dfar::GenerationOptions o;
  o.max_new_tokens = n;
  o.ignore_eos = true;
  return dfar::Generate(m.decoder, *m.tokenizer, {prompt}, o).front().ids;
}

// The same greedy loop with no cache: a full forward per new token.
std::vector<int32_t> GreedyRecompute(dfar::Decoder& d, const std::vector<int32_t>& prompt, int64_t n) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> seq(prompt.begin(), prompt.end());
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i) {
    auto hidden = d->forward({torch::tensor(seq, torch::kLong).unsqueeze(0)});
    const int64_t next = d->Logits(hidden.select(1, hidden.size(1) - 1)).argmax(-1).item<int64_t>();
    seq.push_back(next);
    out.push_back(static_cast<int32_t>(next));
  }
  return out;
}

int64_t MatchingPrefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const auto mismatch =
      std::mismatch(a.begin(), a.begin() + static_cast<long>(std::min(a.size(), b.size())), b.begin());
  return static_cast<int64_t>(mismatch.first - a.begin());
}

template <typename Fn>
double BestSeconds(Fn&& fn) {
  fn();
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    const double t0 = dfar::bench::Now();
    fn();
    best = std::min(best, dfar::bench::Now() - t0);
  }
  return best;
}

// GB/s over a 256 MiB fp32 tensor: read (a sum) and copied (bytes per second).
struct Bandwidth {
  double read = 0, copy = 0;
};
Bandwidth MeasureBandwidth() {
  const auto src = torch::ones({int64_t{64} << 20}, torch::kFloat);
  auto dst = torch::empty_like(src);
  const double gb = static_cast<double>(src.nbytes()) / 1e9;
  Bandwidth b;
  b.read = gb / BestSeconds([&] { (void)src.sum(); });
  b.copy = gb / BestSeconds([&] { dst.copy_(src); });
  return b;
}

// Bytes of weights one decode step reads: every parameter once (tied
// weights are one tensor, so they count once).
double WeightBytes(dfar::Decoder& d) {
  double bytes = 0;
  for (const auto& p : d->parameters()) bytes += static_cast<double>(p.nbytes());
  return bytes;
}

template <typename Fn>
double MedianSeconds(int reps, Fn&& fn) {
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const double t0 = dfar::bench::Now();
    fn();
    times.push_back(dfar::bench::Now() - t0);
  }
  return dfar::bench::Median(times);
}

int Run(const Args& args) {
  dfar::ModelSection fp32;
  fp32.device = "cpu";
  fp32.dtype = "fp32";
  dfar::ApplyWaitPolicy(fp32);  // May re-execute this benchmark under dfar's fp32 policy.
  dfar::SetCpuThreads(static_cast<int>(args.GetInt("threads", 2)));
  const std::string model_path = args.Get("model", kDefaultModel);
  const int64_t n = args.GetInt("new-tokens", args.quick ? 32 : 128);
  const int reps = static_cast<int>(args.GetInt("reps", 1));
  DFAR_CHECK(n >= 1 && reps >= 1, "--new-tokens and --reps must be >= 1");
  auto model = dfar::LoadPretrained(model_path);
  DFAR_CHECK(model.tokenizer != nullptr, model_path, ": the model carries no tokenizer");
  model.decoder->eval();
  const auto prompt = PromptIds(*model.tokenizer);

  Report report("generate", args);
  dfar::bench::AddTorchMeta(report);
  report.Meta("model", model_path);
  report.Meta("dtype", "fp32");
  report.Meta("prompt_tokens", std::to_string(prompt.size()));
  report.Meta("omp_wait_policy", dfar::WaitPolicyLine());
  report.Begin({{"method", 10}, {"new_tokens", 10}, {"seconds", 9, 3}, {"tokens_per_s", 12, 2}, {"speedup", 8, 2}});

  GreedyCached(model, prompt, 4);  // Warm-up: first-call allocations and kernel selection.
  GreedyRecompute(model.decoder, prompt, 2);
  std::vector<int32_t> cached, recomputed;
  const double t_cache = MedianSeconds(reps, [&] { cached = GreedyCached(model, prompt, n); });
  const double t_recompute = MedianSeconds(1, [&] { recomputed = GreedyRecompute(model.decoder, prompt, n); });

  const int64_t prefix = MatchingPrefix(cached, recomputed);
  const int64_t required = n - n / 16;
  const bool ok =
      static_cast<int64_t>(cached.size()) == n && static_cast<int64_t>(recomputed.size()) == n && prefix >= required;
  const double tokens = static_cast<double>(n);
  report.Row({std::string("kv-cache"), n, t_cache, tokens / t_cache, t_recompute / t_cache}, ok);
  report.Row({std::string("recompute"), n, t_recompute, tokens / t_recompute, 1.0}, ok);
  report.Note("greedy, batch 1, fp32; seconds include the prefill; kv-cache: median of " + std::to_string(reps) +
              " run(s), recompute: 1 run; speedup = recompute seconds / method seconds");
  report.Note("tokens identical for the first " + std::to_string(prefix) + " of " + std::to_string(n) +
              " (required >= " + std::to_string(required) +
              ": the two paths mask differently, fp32 near-ties may flip)");
  report.Summary("prompt_text", kPrompt);
  report.Summary("prompt_ids", prompt);
  report.Summary("generated_ids", cached);
  report.Summary("matching_prefix", prefix);
  report.Summary("speedup", t_recompute / t_cache);
  const Bandwidth bw = MeasureBandwidth();
  const double weight_mb = WeightBytes(model.decoder) / 1e6;
  const double bound = bw.read * 1e3 / weight_mb;  // tokens/s if only the weight reads cost time.
  report.Summary("read_GBps", bw.read);
  report.Summary("copy_GBps", bw.copy);
  report.Summary("weight_MB_per_token", weight_mb);
  report.Summary("bandwidth_bound_tokens_per_s", bound);
  report.Summary("kv_cache_share_of_bound", tokens / t_cache / bound);
  char line[200];
  std::snprintf(line, sizeof(line),
                "bound = read bandwidth (256 MiB sum, same threads) / weight bytes per token = %.1f GB/s / %.0f MB "
                "= %.1f tokens/s (copy: %.1f GB/s copied)",
                bw.read, weight_mb, bound, bw.copy);
  report.Note(line);
  return report.Finish();
}

}  // namespace

int main(int argc, char** argv) {
  dfar::RememberCommandLine(argc, argv);
  return dfar::bench::Main(argc, argv, kUsage, Run);
}
