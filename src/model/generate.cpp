#include "dfar/model/generate.h"

#include <algorithm>
#include <chrono>

#include "dfar/core/error.h"
#include "dfar/runtime/thread_policy.h"

namespace dfar {
namespace {

struct PaddedPrompts {
  torch::Tensor ids, positions, segments;  // [B, P]
  std::vector<int64_t> lengths;
};

// Left-pads so every prompt ends at the same slot; pads are segment 0.
PaddedPrompts LeftPad(const std::vector<std::vector<int32_t>>& prompts, int64_t pad_id) {
  PaddedPrompts p;
  int64_t longest = 0;
  for (const auto& pr : prompts) {
    DFAR_CHECK(!pr.empty(), "cannot generate from an empty prompt");
    longest = std::max<int64_t>(longest, static_cast<int64_t>(pr.size()));
  }
  const int64_t b = static_cast<int64_t>(prompts.size());
  p.ids = torch::full({b, longest}, pad_id, torch::kLong);
  p.positions = torch::zeros({b, longest}, torch::kLong);
  p.segments = torch::zeros({b, longest}, torch::kLong);
  for (int64_t r = 0; r < b; ++r) {
    const auto& pr = prompts[static_cast<size_t>(r)];
    const int64_t n = static_cast<int64_t>(pr.size()), off = longest - n;
    for (int64_t i = 0; i < n; ++i) p.ids[r][off + i] = pr[static_cast<size_t>(i)];
    p.positions[r].narrow(0, off, n).copy_(torch::arange(n));
    p.segments[r].narrow(0, off, n).fill_(1);
    p.lengths.push_back(n);
  }
  return p;
}

// The next token of every row, chosen where the logits are (the device):
// argmax, or inverse-CDF sampling with one uniform per row drawn from the
// CPU generator `gen`, so a seed gives the same text on every device. Only
// the [B] chosen ids come back to the host.
torch::Tensor SampleNext(const torch::Tensor& logits, const GenerationOptions& o, at::Generator& gen) {
  if (o.temperature <= 0.0) return logits.argmax(-1).cpu();
  auto probs = torch::softmax(logits.to(torch::kFloat) / o.temperature, -1);
  if (o.top_p < 1.0) {
    auto sorted = probs.sort(-1, /*descending=*/true);
    auto p_sorted = std::get<0>(sorted), idx = std::get<1>(sorted);
    auto before = p_sorted.cumsum(-1) - p_sorted;  // Mass strictly above each token.
    p_sorted = p_sorted.masked_fill(before > o.top_p, 0.0);
    probs = torch::zeros_like(probs).scatter(-1, idx, p_sorted);
  }
  auto cdf = probs.cumsum(-1);
  auto u = torch::rand({probs.size(0), 1}, gen, torch::kFloat).to(probs.device()) * cdf.narrow(-1, cdf.size(-1) - 1, 1);
  // right=true: the first token whose cumulative mass exceeds u, so a token
  // of zero mass (its cdf equal to the previous one) is never chosen.
  auto next = torch::searchsorted(cdf, u, /*out_int32=*/false, /*right=*/true).squeeze(-1);
  return next.clamp_max(probs.size(-1) - 1).cpu();
}

// Cuts text at the earliest stop string; true if one was found.
bool CutAtStop(std::string* text, const std::vector<std::string>& stops) {
  size_t cut = std::string::npos;
  for (const auto& s : stops)
    if (!s.empty()) cut = std::min(cut, text->find(s));
  if (cut == std::string::npos) return false;
  text->resize(cut);
  return true;
}

// Keeps the KV-cache rows `rows` (int64 indices, on the cache's device).
void KeepCacheRows(KvCache* cache, const torch::Tensor& rows) {
  for (auto& k : cache->k) k = k.index_select(0, rows);
  for (auto& v : cache->v) v = v.index_select(0, rows);
  cache->segment_ids = cache->segment_ids.index_select(0, rows);
}

// The decode steps' CPU thread count (GenerationOptions::decode_threads):
// with 0, steps 1-2 run on the caller's count and steps 3-4 on one thread
// (step 0 warms up), and the faster pair decides the rest. Restores the
// caller's count when destroyed.
class DecodeThreads {
 public:
  DecodeThreads(int requested, bool on_cpu) : caller_(at::get_num_threads()), fixed_(requested) {
    if (!on_cpu || (requested == 0 && caller_ <= 1)) fixed_ = -1;  // Nothing to choose.
    if (fixed_ > 0) SetCpuThreads(fixed_);
  }
  ~DecodeThreads() {
    if (fixed_ >= 0) SetCpuThreads(caller_);
  }
  DecodeThreads(const DecodeThreads&) = delete;
  DecodeThreads& operator=(const DecodeThreads&) = delete;

  void BeforeStep(int64_t step) {
    if (fixed_ != 0) return;
    if (step == 3) SetCpuThreads(1);
    start_ = Clock::now();
  }
  void AfterStep(int64_t step) {
    if (fixed_ != 0 || step < 1 || step > 4) return;
    (step <= 2 ? caller_s_ : one_s_) += std::chrono::duration<double>(Clock::now() - start_).count();
    if (step == 4) SetCpuThreads(one_s_ < caller_s_ ? 1 : caller_);
  }

 private:
  using Clock = std::chrono::steady_clock;
  int caller_;
  int fixed_;  // -1: leave threads alone; 0: time and choose; n: n threads.
  Clock::time_point start_;
  double caller_s_ = 0, one_s_ = 0;
};

}  // namespace

std::vector<Generation> Generate(Decoder& decoder, const Tokenizer& tok,
                                 const std::vector<std::vector<int32_t>>& prompts, const GenerationOptions& o) {
  torch::NoGradGuard no_grad;
  const auto device = decoder->embed->weight.device();
  PaddedPrompts p = LeftPad(prompts, std::max(tok.pad_id(), 0));
  const int64_t b = p.ids.size(0), plen = p.ids.size(1);
  DFAR_CHECK(plen + o.max_new_tokens <= decoder->config().max_position, "prompt (", plen, ") + max_new_tokens (",
             o.max_new_tokens, ") exceeds the model's context of ", decoder->config().max_position, " tokens");
  KvCache cache = decoder->NewCache(b, plen + o.max_new_tokens);
  auto hidden = decoder->forward({p.ids.to(device), p.positions.to(device), p.segments.to(device)}, &cache);
  auto logits = decoder->Logits(hidden.select(1, plen - 1));
  auto gen = at::detail::createCPUGenerator(o.seed);
  std::vector<Generation> out(static_cast<size_t>(b));
  std::vector<int64_t> running(static_cast<size_t>(b));  // Batch slot -> row of `out`.
  for (int64_t r = 0; r < b; ++r) running[static_cast<size_t>(r)] = r;
  auto next_pos = torch::tensor(p.lengths, torch::kLong).unsqueeze(1);
  DecodeThreads threads(o.decode_threads, device.is_cpu());
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    auto next = SampleNext(logits, o, gen);  // [running] int64 on the host.
    const auto chosen = next.accessor<int64_t, 1>();
    std::vector<int64_t> keep;  // Slots whose row goes on.
    for (size_t slot = 0; slot < running.size(); ++slot) {
      auto& g = out[static_cast<size_t>(running[slot])];
      const int32_t id = static_cast<int32_t>(chosen[static_cast<int64_t>(slot)]);
      if (id == tok.eos_id() && !o.ignore_eos) {
        g.stop_reason = "eos";
        continue;
      }
      g.ids.push_back(id);
      g.text = tok.Decode(g.ids);
      if (CutAtStop(&g.text, o.stop_strings)) {
        g.stop_reason = "stop_string";
        continue;
      }
      if (o.stop_when && o.stop_when(g.text)) {
        g.stop_reason = "done";
        continue;
      }
      keep.push_back(static_cast<int64_t>(slot));
    }
    if (keep.empty() || step + 1 == o.max_new_tokens) break;
    if (keep.size() < running.size()) {  // Finished rows leave the batch.
      const auto slots = torch::tensor(keep, torch::kLong);
      KeepCacheRows(&cache, slots.to(device));
      next = next.index_select(0, slots);
      next_pos = next_pos.index_select(0, slots);
      std::vector<int64_t> still;
      for (int64_t k : keep) still.push_back(running[static_cast<size_t>(k)]);
      running.swap(still);
    }
    const int64_t n = static_cast<int64_t>(running.size());
    threads.BeforeStep(step);
    auto seg = torch::ones({n, 1}, torch::kLong);
    hidden = decoder->forward({next.unsqueeze(1).to(device), next_pos.to(device), seg.to(device)}, &cache);
    logits = decoder->Logits(hidden.select(1, 0));
    threads.AfterStep(step);
    next_pos = next_pos + 1;
  }
  for (auto& g : out)
    if (g.stop_reason.empty()) g.stop_reason = "length";
  return out;
}

}  // namespace dfar
