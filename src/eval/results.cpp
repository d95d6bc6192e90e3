#include "dfar/eval/results.h"

#include <cmath>
#include <limits>
#include <map>

#include "dfar/core/error.h"
#include "dfar/data/csv.h"

namespace dfar {
namespace {

constexpr const char* kShardFormat = "dfar-eval-shard";
constexpr int kShardVersion = 1;

// JSON has no infinities: nlohmann writes them as null, read back as NaN.
double Number(const nlohmann::json& j, const char* key) {
  const auto& v = j.at(key);
  return v.is_null() ? std::numeric_limits<double>::quiet_NaN() : v.get<double>();
}

nlohmann::json ParseShard(const std::string& payload, size_t rank) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(payload);
  } catch (const nlohmann::json::exception& e) {
    DFAR_THROW("eval gather: rank ", rank, " sent malformed JSON: ", e.what());
  }
  DFAR_CHECK(j.is_object() && j.value("format", "") == kShardFormat, "eval gather: rank ", rank,
             " sent a payload that is not a ", kShardFormat);
  DFAR_CHECK(j.value("version", 0) == kShardVersion, "eval gather: rank ", rank, " sent ", kShardFormat, " version ",
             j.value("version", 0), "; this build reads version ", kShardVersion);
  return j;
}

// Places each result at its expected position; every position once.
void PlaceResults(const nlohmann::json& shard, int rank, const std::map<int64_t, size_t>& position,
                  std::vector<int>* owner, std::vector<ExampleResult>* out) {
  for (const auto& item : shard.at("results")) {
    ExampleResult r = ResultFromJson(item);
    auto it = position.find(r.index);
    DFAR_CHECK(it != position.end(), "eval gather: rank ", rank, " returned example ", r.index,
               ", which is not among the evaluated examples");
    int& who = (*owner)[it->second];
    DFAR_CHECK(who < 0, "eval gather: example ", r.index, " was evaluated twice (ranks ", who, " and ", rank, ")");
    who = rank;
    (*out)[it->second] = std::move(r);
  }
}

}  // namespace

nlohmann::json ResultToJson(const ExampleResult& r) {
  return {{"index", r.index},
          {"statement", r.statement},
          {"gold", r.gold},
          {"gold_reason", r.gold_reason},
          {"predicted", r.predicted},
          {"parsed", r.parsed()},
          {"generated", r.generated},
          {"reason", r.reason},
          {"prompt_tokens", r.prompt_tokens},
          {"generated_tokens", r.generated_tokens},
          {"stop_reason", r.stop_reason},
          {"logprob_ethical", r.logprob_ethical},
          {"logprob_unethical", r.logprob_unethical},
          {"judged", r.judged},
          {"similarity", r.similarity},
          {"reason_label", r.reason_label},
          {"human_reason_label", r.human_reason_label}};
}

ExampleResult ResultFromJson(const nlohmann::json& j) {
  ExampleResult r;
  r.index = j.at("index").get<int64_t>();
  r.statement = j.at("statement").get<std::string>();
  r.gold = j.at("gold").get<int>();
  r.gold_reason = j.at("gold_reason").get<std::string>();
  r.predicted = j.at("predicted").get<int>();
  r.generated = j.at("generated").get<std::string>();
  r.reason = j.at("reason").get<std::string>();
  r.prompt_tokens = j.at("prompt_tokens").get<int64_t>();
  r.generated_tokens = j.at("generated_tokens").get<int64_t>();
  r.stop_reason = j.at("stop_reason").get<std::string>();
  r.logprob_ethical = Number(j, "logprob_ethical");
  r.logprob_unethical = Number(j, "logprob_unethical");
  r.judged = j.value("judged", false);
  r.similarity = Number(j, "similarity");
  r.reason_label = j.value("reason_label", kUnparseable);
  r.human_reason_label = j.value("human_reason_label", kUnparseable);
  return r;
}

nlohmann::json StatsToJson(const RankStats& s) {
  return {{"rank", s.rank},
          {"device", s.device},
          {"examples", s.examples},
          {"prompt_tokens", s.prompt_tokens},
          {"generated_tokens", s.generated_tokens},
          {"seconds", s.seconds},
          {"tokens_per_s", s.tokens_per_s()},
          {"examples_per_s", s.examples_per_s()}};
}

RankStats StatsFromJson(const nlohmann::json& j) {
  RankStats s;
  s.rank = j.at("rank").get<int>();
  s.device = j.at("device").get<std::string>();
  s.examples = j.at("examples").get<int64_t>();
  s.prompt_tokens = j.at("prompt_tokens").get<int64_t>();
  s.generated_tokens = j.at("generated_tokens").get<int64_t>();
  s.seconds = j.at("seconds").get<double>();
  return s;
}

std::string DumpJson(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string SanitizeUtf8(const std::string& text) {
  std::string out;
  std::string_view rest = text;
  size_t bad = 0;
  while (!IsValidUtf8(rest, &bad)) {
    out.append(rest.substr(0, bad));
    out += "\xEF\xBF\xBD";
    rest.remove_prefix(bad + 1);
  }
  out.append(rest);
  return out;
}

std::string EncodeShard(const RankStats& stats, const std::vector<ExampleResult>& results, const std::string& error) {
  nlohmann::json j = {
      {"format", kShardFormat}, {"version", kShardVersion}, {"stats", StatsToJson(stats)}, {"error", error}};
  j["results"] = nlohmann::json::array();
  for (const auto& r : results) j["results"].push_back(ResultToJson(r));
  return DumpJson(j);
}

GatheredResults MergeShards(const std::vector<std::string>& payloads, const std::vector<int64_t>& expected_indices) {
  std::map<int64_t, size_t> position;
  for (size_t i = 0; i < expected_indices.size(); ++i) {
    DFAR_CHECK(position.emplace(expected_indices[i], i).second, "eval: example index ", expected_indices[i],
               " appears twice in the evaluated examples");
  }
  GatheredResults out;
  out.results.resize(expected_indices.size());
  std::vector<int> owner(expected_indices.size(), -1);
  std::vector<nlohmann::json> shards;
  for (size_t rank = 0; rank < payloads.size(); ++rank) {
    shards.push_back(ParseShard(payloads[rank], rank));
    const std::string error = shards.back().value("error", "");
    DFAR_CHECK(error.empty(), "eval: rank ", rank, " failed: ", error);
  }
  for (size_t rank = 0; rank < shards.size(); ++rank) {
    const nlohmann::json& shard = shards[rank];
    try {
      out.ranks.push_back(StatsFromJson(shard.at("stats")));
      PlaceResults(shard, static_cast<int>(rank), position, &owner, &out.results);
    } catch (const nlohmann::json::exception& e) {
      DFAR_THROW("eval gather: rank ", rank, " sent a malformed shard: ", e.what());
    }
  }
  for (size_t i = 0; i < owner.size(); ++i) {
    DFAR_CHECK(owner[i] >= 0, "eval gather: no rank returned example ", expected_indices[i], " (", payloads.size(),
               " ranks)");
  }
  return out;
}

GatheredResults GatherResults(Communicator& comm, const RankStats& stats, const std::vector<ExampleResult>& results,
                              const std::vector<int64_t>& expected_indices, const std::string& error) {
  return MergeShards(comm.AllGatherBytes(EncodeShard(stats, results, error)), expected_indices);
}

}  // namespace dfar
