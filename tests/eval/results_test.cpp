// Exactly-once sharding and the order-restoring gather, with fake ranks.
#include "dfar/eval/results.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "dfar/core/error.h"
#include "dfar/data/sampler.h"

namespace dfar {
namespace {

ExampleResult Result(int64_t index) {
  ExampleResult r;
  r.index = index;
  r.statement = "statement " + std::to_string(index);
  r.gold = static_cast<int>(index % 2);
  r.predicted = index % 3 == 0 ? kUnparseable : static_cast<int>(index % 2);
  r.generated = "gen " + std::to_string(index);
  return r;
}

std::vector<int64_t> Iota(int64_t n, int64_t first = 0) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = first + i;
  return v;
}

// What N ranks would send: rank r's EvalShard, results in a scrambled order.
std::vector<std::string> FakeRanks(const std::vector<int64_t>& indices, int world) {
  std::vector<std::string> payloads;
  for (int r = 0; r < world; ++r) {
    const Range range = EvalShard(static_cast<int64_t>(indices.size()), r, world);
    std::vector<ExampleResult> mine;
    for (int64_t i = range.begin; i < range.end; ++i) mine.push_back(Result(indices[static_cast<size_t>(i)]));
    std::reverse(mine.begin(), mine.end());  // Length-sorted batches scramble the order.
    RankStats stats;
    stats.rank = r;
    stats.examples = static_cast<int64_t>(mine.size());
    payloads.push_back(EncodeShard(stats, mine));
  }
  return payloads;
}

TEST(ResultsTest, SevenExamplesOnAnyWorldComeBackOnceInOrder) {
  const std::vector<int64_t> indices = Iota(7, 100);
  for (int world = 1; world <= 9; ++world) {
    const GatheredResults g = MergeShards(FakeRanks(indices, world), indices);
    ASSERT_EQ(g.results.size(), 7u) << "world " << world;
    for (size_t i = 0; i < 7; ++i) EXPECT_EQ(g.results[i].index, indices[i]) << "world " << world;
    ASSERT_EQ(g.ranks.size(), static_cast<size_t>(world));
    int64_t examples = 0;
    for (const RankStats& s : g.ranks) examples += s.examples;
    EXPECT_EQ(examples, 7) << "world " << world;
  }
}

TEST(ResultsTest, ShardsAreContiguousExactlyOnceAndBalanced) {
  for (int64_t n : {0, 1, 6, 7, 500}) {
    for (int world = 1; world <= 8; ++world) {
      int64_t next = 0, smallest = n, largest = 0;
      for (int r = 0; r < world; ++r) {
        const Range range = EvalShard(n, r, world);
        EXPECT_EQ(range.begin, next);
        next = range.end;
        smallest = std::min(smallest, range.end - range.begin);
        largest = std::max(largest, range.end - range.begin);
      }
      EXPECT_EQ(next, n);
      EXPECT_LE(largest - smallest, 1);
    }
  }
}

TEST(ResultsTest, ResultJsonRoundTrips) {
  ExampleResult r = Result(3);
  r.gold_reason = "because \"quoted\"\nand more";
  r.reason = "why";
  r.prompt_tokens = 12;
  r.generated_tokens = 4;
  r.stop_reason = "eos";
  r.logprob_ethical = -1.5;
  r.logprob_unethical = -2.25;
  const ExampleResult back = ResultFromJson(nlohmann::json::parse(DumpJson(ResultToJson(r))));
  EXPECT_EQ(DumpJson(ResultToJson(back)), DumpJson(ResultToJson(r)));
  EXPECT_FALSE(back.parsed());
}

TEST(ResultsTest, GatherThroughTheSingleCommunicator) {
  auto comm = MakeSingleCommunicator();
  RankStats stats;
  stats.examples = 2;
  const GatheredResults g = GatherResults(*comm, stats, {Result(1), Result(0)}, {0, 1});
  ASSERT_EQ(g.results.size(), 2u);
  EXPECT_EQ(g.results[0].index, 0);
  EXPECT_EQ(g.results[1].statement, "statement 1");
  EXPECT_EQ(g.ranks[0].examples, 2);
}

std::string MergeError(const std::vector<std::string>& payloads, const std::vector<int64_t>& expected) {
  try {
    MergeShards(payloads, expected);
  } catch (const Error& e) {
    return e.message();
  }
  return "(no error)";
}

TEST(ResultsTest, DuplicateMissingAndUnexpectedExamplesAreErrors) {
  RankStats s0, s1;
  s1.rank = 1;
  const std::string a = EncodeShard(s0, {Result(0), Result(1)});
  const std::string b = EncodeShard(s1, {Result(1), Result(2)});
  EXPECT_NE(MergeError({a, b}, {0, 1, 2}).find("example 1 was evaluated twice (ranks 0 and 1)"), std::string::npos);
  EXPECT_NE(MergeError({a}, {0, 1, 2}).find("no rank returned example 2"), std::string::npos);
  EXPECT_NE(MergeError({a}, {0}).find("example 1, which is not among"), std::string::npos);
  EXPECT_NE(MergeError({"not json"}, {0}).find("rank 0 sent malformed JSON"), std::string::npos);
  EXPECT_NE(MergeError({"{\"format\":\"other\"}"}, {0}).find("not a dfar-eval-shard"), std::string::npos);
  EXPECT_NE(MergeError({"{\"format\":\"dfar-eval-shard\",\"version\":9}"}, {0}).find("version 9"), std::string::npos);
  EXPECT_NE(MergeError({"{\"format\":\"dfar-eval-shard\",\"version\":1}"}, {0}).find("malformed shard"),
            std::string::npos);
}

TEST(ResultsTest, ARankErrorReachesEveryRank) {
  RankStats s0, s1;
  s1.rank = 1;
  const std::string ok = EncodeShard(s0, {Result(0)});
  const std::string failed = EncodeShard(s1, {}, "prompt too long");
  EXPECT_NE(MergeError({ok, failed}, {0, 1}).find("eval: rank 1 failed: prompt too long"), std::string::npos);
}

TEST(ResultsTest, InvalidUtf8IsReplaced) {
  EXPECT_EQ(SanitizeUtf8("ok"), "ok");
  EXPECT_EQ(SanitizeUtf8("a\xE2\x80"), "a\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(SanitizeUtf8("\xFFz"), "\xEF\xBF\xBDz");
  ExampleResult r = Result(0);
  r.generated = "cut \xE2\x80";
  EXPECT_NO_THROW(EncodeShard(RankStats{}, {r}));
}

}  // namespace
}  // namespace dfar
