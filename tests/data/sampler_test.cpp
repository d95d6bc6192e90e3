#include "dfar/data/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "dfar/core/error.h"

namespace dfar {
namespace {

std::vector<int64_t> RandomLengths(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<int64_t> lengths(n);
  for (int64_t& len : lengths) len = 8 + static_cast<int64_t>(rng.Below(500));
  return lengths;
}

SamplerConfig Config(int64_t micro_batch, const std::string& remainder, bool group = true, int64_t window = 16) {
  SamplerConfig c;
  c.micro_batch = micro_batch;
  c.remainder = remainder;
  c.group_by_length = group;
  c.group_window = window;
  return c;
}

TEST(SamplerRng, MatchesSplitMix64Reference) {
  // First outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
  Rng rng(0);
  EXPECT_EQ(rng.Next(), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(rng.Next(), 0x6E789E6AA1B965F4ULL);
  EXPECT_EQ(rng.Next(), 0x06C45D188009454FULL);
}

TEST(SamplerRng, BelowIsInRangeAndRoughlyUniform) {
  Rng rng(3);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) {
    const uint64_t v = rng.Below(7);
    ASSERT_LT(v, 7u);
    ++counts[v];
  }
  // Expected 10000 each; 5 sigma is about 470.
  for (int c : counts) EXPECT_NEAR(c, 10000, 500);
  EXPECT_EQ(rng.Below(1), 0u);
  const uint64_t huge = (1ULL << 63) + 1;  // Rejection matters most here.
  for (int i = 0; i < 100; ++i) EXPECT_LT(rng.Below(huge), huge);
  for (int i = 0; i < 100; ++i) {
    const double u = rng.Uniform();
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
  }
}

TEST(SamplerRng, ShuffleIsAPermutationAndSeeded) {
  std::vector<int64_t> a(100), b;
  for (int64_t i = 0; i < 100; ++i) a[i] = i;
  b = a;
  Rng r1(9), r2(9);
  Shuffle(a, r1);
  Shuffle(b, r2);
  EXPECT_EQ(a, b);
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 100; ++i) EXPECT_EQ(sorted[i], i);
  std::vector<int64_t> ident(100);
  for (int64_t i = 0; i < 100; ++i) ident[i] = i;
  EXPECT_NE(a, ident);
}

// All ranks' batches of one epoch.
std::vector<std::vector<std::vector<int64_t>>> AllRanks(const std::vector<int64_t>& lengths, int world,
                                                        const SamplerConfig& c, uint64_t seed, int64_t epoch) {
  std::vector<std::vector<std::vector<int64_t>>> out;
  for (int r = 0; r < world; ++r) out.push_back(ShardedSampler(lengths, r, world, c, seed).EpochBatches(epoch));
  return out;
}

TEST(SamplerShards, DisjointAndEqualWithDrop) {
  for (int64_t n : {1, 7, 64, 100, 1001}) {
    for (int world : {1, 2, 3, 8}) {
      for (int64_t mb : {1, 2, 5}) {
        if (n < world * mb) continue;
        const auto ranks = AllRanks(RandomLengths(n, 1), world, Config(mb, "drop"), 42, 0);
        std::set<int64_t> seen;
        for (const auto& batches : ranks) {
          EXPECT_EQ(batches.size(), ranks[0].size());
          EXPECT_EQ(static_cast<int64_t>(batches.size()), n / (world * mb));
          for (const auto& batch : batches) {
            EXPECT_EQ(static_cast<int64_t>(batch.size()), mb);
            for (int64_t i : batch) {
              EXPECT_TRUE(i >= 0 && i < n);
              EXPECT_TRUE(seen.insert(i).second) << "duplicate " << i << " n=" << n << " world=" << world;
            }
          }
        }
        EXPECT_EQ(static_cast<int64_t>(seen.size()), n - n % (world * mb));
      }
    }
  }
}

TEST(SamplerShards, WrapCoversEveryExampleAndFillsFromTheStart) {
  for (int64_t n : {5, 7, 100}) {
    for (int world : {2, 3}) {
      const int64_t mb = 4;
      const auto ranks = AllRanks(RandomLengths(n, 2), world, Config(mb, "wrap", false), 5, 1);
      std::multiset<int64_t> seen;
      for (const auto& batches : ranks) {
        EXPECT_EQ(static_cast<int64_t>(batches.size()), (n + world * mb - 1) / (world * mb));
        for (const auto& batch : batches) seen.insert(batch.begin(), batch.end());
      }
      for (int64_t i = 0; i < n; ++i) EXPECT_GE(seen.count(i), 1u) << i;
      EXPECT_EQ(seen.size() % (world * mb), 0u);
    }
  }
}

// The defining property: N ranks x micro_batch B see, batch by batch, exactly
// the examples that 1 rank x micro_batch N*B sees.
TEST(SamplerShards, WorldTimesBatchIsInvariant) {
  const std::vector<int64_t> lengths = RandomLengths(257, 3);
  for (const std::string remainder : {"drop", "wrap"}) {
    for (int world : {2, 4}) {
      const int64_t b = 3;
      const auto single = ShardedSampler(lengths, 0, 1, Config(world * b, remainder), 77).EpochBatches(2);
      const auto ranks = AllRanks(lengths, world, Config(b, remainder), 77, 2);
      ASSERT_EQ(ranks[0].size(), single.size());
      for (size_t step = 0; step < single.size(); ++step) {
        std::vector<int64_t> joined;
        for (const auto& batches : ranks) joined.insert(joined.end(), batches[step].begin(), batches[step].end());
        EXPECT_EQ(joined, single[step]) << remainder << " world " << world << " step " << step;
      }
    }
  }
}

TEST(SamplerOrder, DeterministicAndDifferentPerEpochAndSeed) {
  const std::vector<int64_t> lengths = RandomLengths(200, 4);
  const ShardedSampler a(lengths, 1, 2, Config(4, "drop"), 123);
  const ShardedSampler b(lengths, 1, 2, Config(4, "drop"), 123);
  const ShardedSampler other_seed(lengths, 1, 2, Config(4, "drop"), 124);
  EXPECT_EQ(a.EpochBatches(0), b.EpochBatches(0));
  EXPECT_EQ(a.EpochBatches(5), b.EpochBatches(5));
  EXPECT_NE(a.EpochBatches(0), a.EpochBatches(1));
  EXPECT_NE(a.EpochBatches(0), other_seed.EpochBatches(0));
}

TEST(SamplerCursor, NextRollsOverAndSeekReplays) {
  const std::vector<int64_t> lengths = RandomLengths(50, 5);
  ShardedSampler s(lengths, 0, 2, Config(4, "drop"), 9);
  ASSERT_EQ(s.batches_per_epoch(), 6);
  std::vector<std::vector<int64_t>> taken;
  for (int i = 0; i < 15; ++i) taken.push_back(s.Next());
  EXPECT_EQ(s.cursor(), (SamplerCursor{2, 3}));
  const auto e0 = s.EpochBatches(0);
  const auto e1 = s.EpochBatches(1);
  EXPECT_EQ(std::vector<std::vector<int64_t>>(taken.begin(), taken.begin() + 6), e0);
  EXPECT_EQ(std::vector<std::vector<int64_t>>(taken.begin() + 6, taken.begin() + 12), e1);

  // A fresh sampler seeked to a saved cursor continues identically.
  ShardedSampler resumed(lengths, 0, 2, Config(4, "drop"), 9);
  resumed.Seek({1, 2});
  for (int i = 8; i < 15; ++i) EXPECT_EQ(resumed.Next(), taken[i]) << i;
  s.Seek({0, 0});
  EXPECT_EQ(s.Next(), taken[0]);
  EXPECT_THROW(s.Seek({0, 6}), Error);
  EXPECT_THROW(s.Seek({-1, 0}), Error);
}

int64_t PaddedTokens(const std::vector<std::vector<int64_t>>& batches, const std::vector<int64_t>& lengths) {
  int64_t total = 0;
  for (const auto& batch : batches) {
    int64_t longest = 0;
    for (int64_t i : batch) longest = std::max(longest, lengths[i]);
    total += longest * static_cast<int64_t>(batch.size());
  }
  return total;
}

TEST(SamplerGrouping, ReducesPadding) {
  const std::vector<int64_t> lengths = RandomLengths(2048, 6);
  const auto grouped = ShardedSampler(lengths, 0, 1, Config(8, "drop", true, 256), 1).EpochBatches(0);
  const auto plain = ShardedSampler(lengths, 0, 1, Config(8, "drop", false), 1).EpochBatches(0);
  const int64_t g = PaddedTokens(grouped, lengths);
  const int64_t p = PaddedTokens(plain, lengths);
  EXPECT_LT(g, p * 3 / 4) << "grouped " << g << " plain " << p;
}

TEST(SamplerConfigChecks, RejectsImpossibleSetups) {
  const std::vector<int64_t> lengths = RandomLengths(10, 7);
  EXPECT_THROW(ShardedSampler(lengths, 2, 2, Config(1, "drop"), 1), Error);
  EXPECT_THROW(ShardedSampler(lengths, 0, 2, Config(0, "drop"), 1), Error);
  EXPECT_THROW(ShardedSampler(lengths, 0, 2, Config(1, "pad"), 1), Error);
  EXPECT_THROW(ShardedSampler(lengths, 0, 4, Config(4, "drop"), 1), Error);  // 10 < 16.
  EXPECT_EQ(ShardedSampler(lengths, 0, 4, Config(4, "wrap"), 1).batches_per_epoch(), 1);
  EXPECT_THROW(ShardedSampler({}, 0, 1, Config(1, "wrap"), 1), Error);
}

TEST(SamplerEval, ShardsCoverEachIndexExactlyOnce) {
  for (int64_t n : {0, 1, 7, 100}) {
    for (int world : {1, 2, 3, 8}) {
      std::vector<int> hits(static_cast<size_t>(n), 0);
      int64_t smallest = n, largest = 0, expected_begin = 0;
      for (int r = 0; r < world; ++r) {
        const Range range = EvalShard(n, r, world);
        EXPECT_EQ(range.begin, expected_begin) << "ranges must be contiguous and in rank order";
        EXPECT_LE(range.begin, range.end);
        for (int64_t i = range.begin; i < range.end; ++i) ++hits[i];
        smallest = std::min(smallest, range.end - range.begin);
        largest = std::max(largest, range.end - range.begin);
        expected_begin = range.end;
      }
      EXPECT_EQ(expected_begin, n);
      EXPECT_LE(largest - smallest, 1) << "n=" << n << " world=" << world;
      for (int h : hits) EXPECT_EQ(h, 1);
    }
  }
  EXPECT_THROW(EvalShard(5, 2, 2), Error);
  EXPECT_THROW(EvalShard(-1, 0, 1), Error);
}

}  // namespace
}  // namespace dfar
