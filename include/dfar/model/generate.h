// Batched autoregressive generation with a KV cache.
//
// Owns: left-padding prompts of different lengths into one batch, prefill,
// then one token per step for every unfinished row, with greedy or
// temperature/top-p sampling (seeded), stopping per row on EOS, a stop
// string, the caller's stop_when, or max_new_tokens. A finished row leaves the batch (its KV-cache
// rows are dropped), so later steps compute only the rows still running.
// On a CPU the decode steps pick their own thread count (decode_threads).
// Sampling draws one uniform per running row per step from a generator seeded
// by `seed`, so a seed gives the same text on every device.
// Failure: dfar::Error for empty prompts or a request beyond the model's
// context. Thread-safety: uses the decoder exclusively while running.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dfar/data/tokenizer.h"
#include "dfar/model/decoder.h"

namespace dfar {

struct GenerationOptions {
  int64_t max_new_tokens = 64;
  double temperature = 0.0;  // 0: greedy.
  double top_p = 1.0;        // Nucleus mass kept when sampling.
  uint64_t seed = 0;
  std::vector<std::string> stop_strings;  // Output is cut before the first match.
  // Per row, after each new token: true ends the row there (stop_reason
  // "done"; the text is kept whole). Empty: never.
  std::function<bool(const std::string& text)> stop_when;
  bool ignore_eos = false;  // Keep going past EOS (EOS is kept as a token); for benchmarks.
  // CPU threads of the decode steps (the prefill keeps the caller's). 0:
  // chosen by timing: the first steps run with the caller's count and with 1
  // thread, and the faster is kept (one-token GEMVs often lose more to
  // fork/join than they gain). n > 0: exactly n.
  int decode_threads = 0;
};

struct Generation {
  std::vector<int32_t> ids;  // New tokens only (EOS excluded unless ignore_eos).
  std::string text;          // Decoded, cut at a stop string.
  std::string stop_reason;   // "eos", "stop_string", "done" (stop_when), "length".
};

std::vector<Generation> Generate(Decoder& decoder, const Tokenizer& tokenizer,
                                 const std::vector<std::vector<int32_t>>& prompts, const GenerationOptions& options);

}  // namespace dfar
