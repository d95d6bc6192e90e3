// bench_attention — packed batches: attention by per-sample spans against the
// dense [B,1,T,T] mask, forward + backward of a real decoder.
//
// What it measures: the median wall time of forward + backward (sum of the
// final hidden states) of SmolLM2-135M (fp32) on rows of --seq tokens packed
// with DFAR-sized samples of 40-120 tokens, once with DecoderInputs::spans
// (causal SDPA per sample) and once without (segment ids through the dense
// additive mask). Same weights, ids, positions and segments.
//
// Why: the trainer passes spans only where libtorch's SDPA has fused kernels
// that run without a mask (compat::kSdpaFusedWithoutMask, libtorch >= 2);
// this is the measurement behind that choice on a CPU. On a GPU the fused
// flash / memory-efficient kernels only apply without a mask.
//
// Correctness: the two paths' outputs agree to 1e-4 relative RMS (fp32; the
// same sums in another blocking) and every loss is finite.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "dfar/core/error.h"
#include "dfar/model/pretrained.h"
#include "harness.h"
#include "torch_meta.h"

namespace {

using dfar::bench::Args;
using dfar::bench::Report;

const char* const kDefaultModel = ".cache/models/smollm2-135m-instruct.gguf";
const char* const kUsage =
    "bench_attention [--threads N] [--rows B] [--seq T] [--reps N] [--model GGUF] [--quick] [--json FILE]\n"
    "Packed rows, forward + backward: attention by per-sample spans vs the dense mask (fp32).";

struct Packed {
  torch::Tensor ids, positions, segments;
  std::vector<dfar::SegmentSpan> spans;
};

// Rows of `cols` slots filled with samples of 40..120 tokens (a fixed
// sequence of lengths), the rest padding.
Packed MakePacked(int64_t rows, int64_t cols, int64_t vocab) {
  Packed p;
  torch::manual_seed(1);
  p.ids = torch::randint(0, vocab, {rows, cols}, torch::kLong);
  p.segments = torch::zeros({rows, cols}, torch::kLong);
  p.positions = torch::zeros({rows, cols}, torch::kLong);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t at = 0, id = 1;; ++id) {
      const int64_t len = 40 + (17 * (r * 7 + id * 13)) % 81;
      if (at + len > cols) break;
      p.segments[r].narrow(0, at, len).fill_(id);
      p.positions[r].narrow(0, at, len).copy_(torch::arange(len));
      p.spans.push_back({r, at, len});
      at += len;
    }
  }
  return p;
}

// Median seconds of forward + backward over `reps` timed runs after one
// warm-up; `out` gets the last run's hidden states.
double TimeForwardBackward(dfar::Decoder& d, const dfar::DecoderInputs& in, int reps, torch::Tensor* out) {
  std::vector<double> times;
  for (int i = 0; i <= reps; ++i) {
    d->zero_grad();
    const double t0 = dfar::bench::Now();
    auto h = d->forward(in);
    h.sum().backward();
    if (i > 0) times.push_back(dfar::bench::Now() - t0);
    *out = h.detach();
  }
  return dfar::bench::Median(times);
}

int Run(const Args& args) {
  torch::set_num_threads(static_cast<int>(args.GetInt("threads", 2)));
  const std::string model_path = args.Get("model", kDefaultModel);
  const int64_t rows = args.GetInt("rows", 4), seq = args.GetInt("seq", args.quick ? 256 : 512);
  const int reps = static_cast<int>(args.GetInt("reps", args.quick ? 1 : 3));
  DFAR_CHECK(rows >= 1 && seq >= 128 && reps >= 1, "--rows >= 1, --seq >= 128 and --reps >= 1 are needed");
  auto model = dfar::LoadPretrained(model_path, false);
  auto& d = model.decoder;
  d->train();
  const Packed p = MakePacked(rows, seq, d->config().vocab_size);
  Report report("attention", args);
  dfar::bench::AddTorchMeta(report);
  report.Meta("model", model_path);
  report.Meta("samples", std::to_string(p.spans.size()));
  report.Begin({{"method", 12}, {"rows", 5}, {"seq", 5}, {"seconds", 9, 3}, {"tokens_per_s", 12, 1}});
  torch::Tensor by_mask, by_spans;
  const double mask_s = TimeForwardBackward(d, {p.ids, p.positions, p.segments}, reps, &by_mask);
  const double span_s = TimeForwardBackward(d, {p.ids, p.positions, p.segments, p.spans}, reps, &by_spans);
  // Compare real slots only: padding slots are zero by spans, attend-to-self by the mask.
  const auto real = p.segments.reshape({-1}).ne(0).nonzero().squeeze(1);
  auto a = by_spans.reshape({-1, by_spans.size(-1)}).index_select(0, real).to(torch::kDouble);
  auto b = by_mask.reshape({-1, by_mask.size(-1)}).index_select(0, real).to(torch::kDouble);
  const double rel = ((a - b).norm() / b.norm()).item<double>();
  const bool ok = rel <= 1e-4 && std::isfinite(rel);
  const double tokens = static_cast<double>(rows * seq);
  report.Row({std::string("dense-mask"), rows, seq, mask_s, tokens / mask_s}, ok);
  report.Row({std::string("spans"), rows, seq, span_s, tokens / span_s}, ok);
  report.Note("forward + backward of SmolLM2-135M fp32, median of the timed runs after one warm-up");
  report.Summary("spans_speedup", mask_s / span_s);
  report.Summary("relative_rms_difference", rel);
  return report.Finish();
}

}  // namespace

int main(int argc, char** argv) {
  return dfar::bench::Main(argc, argv, kUsage, Run);
}
