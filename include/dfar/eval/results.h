// Per-example eval results and their exactly-once gather to every rank.
//
// Owns: ExampleResult (what one example's evaluation produced), RankStats
// (one rank's throughput), their JSON form, and the merge that turns every
// rank's shard back into the original example order. Torch-free.
//
// Gather protocol: each rank encodes {rank, stats, results} as JSON
// (EncodeShard); one AllGatherBytes collects the payloads (the only
// collective of an evaluation, so ranks never wait for each other while
// decoding); MergeShards checks that every expected example index arrived
// exactly once and from no unexpected place, and orders results as the
// expected list.
// Failure: dfar::Error for a rank that reported an error, malformed payloads,
// unknown format versions, a duplicated, missing or unexpected index (the
// message names the index and the ranks involved).
// Thread-safety: GatherResults is collective: every rank calls it once, in
// the same order relative to other collectives.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dfar/comm/communicator.h"
#include "dfar/eval/verdict.h"

namespace dfar {

struct ExampleResult {
  int64_t index = 0;  // Example::index (row in the data file).
  std::string statement;
  int gold = 0;
  std::string gold_reason;
  int predicted = kUnparseable;
  std::string generated;  // Generated text (generate mode) or the chosen label word (likelihood mode).
  std::string reason;     // Text after the verdict ("" in likelihood mode).
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  std::string stop_reason;     // "eos", "stop_string", "length"; "" in likelihood mode.
  double logprob_ethical = 0;  // Likelihood mode: mean log p per token of the label continuation.
  double logprob_unethical = 0;
  // Reason judging (reason_judge.h); judged is false where it did not run.
  bool judged = false;
  double similarity = 0;  // Cosine of the generated and the human reason's embeddings (0 for an empty reason).
  int reason_label = kUnparseable;        // Majority label of the generated reason's nearest human reasons.
  int human_reason_label = kUnparseable;  // The same rule applied to the human reason (the rule's ceiling).
  // Misaligned: judged, and the reason is empty or argues for the other label.
  bool misaligned() const { return judged && reason_label != gold; }
  bool parsed() const { return predicted != kUnparseable; }
};

struct RankStats {
  int rank = 0;
  std::string device;
  int64_t examples = 0;
  int64_t prompt_tokens = 0;     // Tokens of the prompts (and, in likelihood mode, of both continuations).
  int64_t generated_tokens = 0;  // New tokens decoded (0 in likelihood mode).
  double seconds = 0;            // Wall time of this rank's evaluation loop.
  // (prompt + generated) tokens per second, and examples per second.
  double tokens_per_s() const { return seconds > 0 ? (prompt_tokens + generated_tokens) / seconds : 0.0; }
  double examples_per_s() const { return seconds > 0 ? examples / seconds : 0.0; }
};

nlohmann::json ResultToJson(const ExampleResult& r);
ExampleResult ResultFromJson(const nlohmann::json& j);
nlohmann::json StatsToJson(const RankStats& s);
RankStats StatsFromJson(const nlohmann::json& j);

// Serialises JSON without throwing on invalid UTF-8 (replaced by U+FFFD).
std::string DumpJson(const nlohmann::json& j, int indent = -1);

// Replaces every invalid UTF-8 sequence of `text` by U+FFFD.
std::string SanitizeUtf8(const std::string& text);

struct GatheredResults {
  std::vector<ExampleResult> results;  // In the order of `expected_indices`.
  std::vector<RankStats> ranks;        // In rank order.
};

// A non-empty `error` says that this rank failed (its results are then
// ignored): every rank's MergeShards raises it, so no rank is left waiting in
// a later collective and the message names the rank that failed.
std::string EncodeShard(const RankStats& stats, const std::vector<ExampleResult>& results,
                        const std::string& error = "");

// payloads[r] is rank r's EncodeShard output.
GatheredResults MergeShards(const std::vector<std::string>& payloads, const std::vector<int64_t>& expected_indices);

// Collective: EncodeShard, AllGatherBytes, MergeShards. Every rank gets the result.
GatheredResults GatherResults(Communicator& comm, const RankStats& stats, const std::vector<ExampleResult>& results,
                              const std::vector<int64_t>& expected_indices, const std::string& error = "");

}  // namespace dfar
