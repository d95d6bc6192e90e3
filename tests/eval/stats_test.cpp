// Intervals and the McNemar test against values computed by hand (the
// arithmetic is in the comments). References were checked with python3's
// math, fractions (exact binomial sums) and statistics.NormalDist().inv_cdf
// (Wichura's AS241, ~1e-16 relative); no scipy was used.
#include "dfar/eval/stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "dfar/core/error.h"

namespace dfar {
namespace {

// Closed-form double arithmetic, a few operations deep: a few ulp of
// rounding, so 1e-12 absolute is loose yet catches any formula slip.
constexpr double kTol = 1e-12;

// z for 95% and 99%, from NormalDist().inv_cdf(0.975) and (0.995).
constexpr double kZ95 = 1.9599639845400536;
constexpr double kZ99 = 2.5758293035489;

// Expects `fn` to throw dfar::Error whose message contains `needle`.
template <typename Fn>
void ExpectErrorMentioning(Fn fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no dfar::Error thrown; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find(needle), std::string::npos) << e.message();
  }
}

// ---- NormalQuantile --------------------------------------------------------

TEST(StatsTest, NormalQuantileMatchesReference) {
  // Acklam alone is 1.15e-9 relative; after the Halley step we claim a few
  // ulp, so 1e-14 relative (about 50 ulp) is the stated bound.
  struct Case {
    double p, x;
  };
  const Case cases[] = {{0.975, kZ95},
                        {0.025, -1.9599639845400538},
                        {0.995, kZ99},
                        {0.8, 0.8416212335729144},
                        {1e-10, -6.361340902404056},
                        {0.999999, 4.753424308817089},
                        {1e-300, -37.0470962993612}};
  for (const Case& c : cases) EXPECT_NEAR(NormalQuantile(c.p), c.x, 1e-14 * std::fabs(c.x)) << "p = " << c.p;
  EXPECT_EQ(NormalQuantile(0.5), 0.0);
  // Symmetry is exact by construction (p > 0.5 reflects to 1 - p).
  EXPECT_EQ(NormalQuantile(0.9), -NormalQuantile(1 - 0.9));
}

TEST(StatsTest, NormalQuantileRejectsOutOfRange) {
  ExpectErrorMentioning([] { NormalQuantile(0); }, "p is 0");
  ExpectErrorMentioning([] { NormalQuantile(1); }, "p is 1");
  ExpectErrorMentioning([] { NormalQuantile(std::nan("")); }, "p is");
}

// ---- WilsonInterval --------------------------------------------------------

TEST(StatsTest, WilsonByHand150Of250) {
  // p = 0.6, z^2 = 3.8414588206941236, z^2/n = 0.015365835282776494,
  // denom = 1.0153658352827766,
  // center = (0.6 + 0.007682917641388247) / denom = 0.5984866700504555,
  // half = z / denom * sqrt(0.24/250 + 3.8414588/(4 * 250^2))
  //      = 1.930287 * sqrt(0.00096 + 0.0000153658) = 0.06028500681299525.
  const Interval w = WilsonInterval(150, 250);
  EXPECT_NEAR(w.low, 0.5382016632374603, kTol);
  EXPECT_NEAR(w.high, 0.6587716768634507, kTol);
}

TEST(StatsTest, WilsonHigherConfidenceIsWider) {
  // Same formula with z = 2.5758293035489 (99%).
  const Interval w = WilsonInterval(150, 250, 0.99);
  EXPECT_NEAR(w.low, 0.5186015143224463, kTol);
  EXPECT_NEAR(w.high, 0.6762277963528387, kTol);
}

TEST(StatsTest, WilsonZeroSuccessesHasExactZeroLow) {
  // p = 0: center = half = (z^2/2n) / (1 + z^2/n), so low = 0 (the formula
  // in doubles gives 2.8e-17) and high = z^2 / (n + z^2)
  // = 3.8414588206941236 / 13.841458820694124 = 0.27753279986288915.
  const Interval w = WilsonInterval(0, 10);
  EXPECT_EQ(w.low, 0.0);
  EXPECT_NEAR(w.high, 0.27753279986288915, kTol);
}

TEST(StatsTest, WilsonAllSuccessesHasExactOneHigh) {
  // p = 1: high = 1 exactly, low = n / (n + z^2) = 10 / 13.841458820694124
  // = 0.7224672001371109.
  const Interval w = WilsonInterval(10, 10);
  EXPECT_EQ(w.high, 1.0);
  EXPECT_NEAR(w.low, 0.7224672001371109, kTol);
}

TEST(StatsTest, WilsonOneOfOne) {
  // low = 1 / (1 + z^2) = 1 / 4.841458820694124 = 0.20654931437723745.
  const Interval w = WilsonInterval(1, 1);
  EXPECT_EQ(w.high, 1.0);
  EXPECT_NEAR(w.low, 0.20654931437723745, kTol);
}

TEST(StatsTest, WilsonEmptyIsUnitInterval) {
  const Interval w = WilsonInterval(0, 0);
  EXPECT_EQ(w.low, 0.0);
  EXPECT_EQ(w.high, 1.0);
}

TEST(StatsTest, WilsonRejectsBadArguments) {
  ExpectErrorMentioning([] { WilsonInterval(11, 10); }, "successes is 11");
  ExpectErrorMentioning([] { WilsonInterval(-1, 10); }, "successes is -1");
  ExpectErrorMentioning([] { WilsonInterval(0, -1); }, "n is -1");
  ExpectErrorMentioning([] { WilsonInterval(1, 2, 1.0); }, "confidence is 1");
  ExpectErrorMentioning([] { WilsonInterval(1, 2, 0.0); }, "confidence is 0");
}

// ---- Bootstrap --------------------------------------------------------------

std::vector<double> SampleValues() {
  return {0.2, 1.5, 0.7, 3.1, 2.2, 0.9, 1.1, 4.0, 0.3, 1.8, 2.6, 0.5, 1.2, 2.9, 0.8, 1.6};
}

double Mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return sum / static_cast<double>(v.size());
}

TEST(StatsTest, BootstrapIndexStreamMatchesReference) {
  // The documented stream, re-implemented in Python (splitmix64 from seed
  // 1234, first draw >= 2^64 mod 10, mod 10) gives these first two
  // resamples. Pins cross-platform determinism to the header's definition.
  std::vector<std::vector<int64_t>> seen;
  BootstrapInterval(
      10,
      [&seen](const std::vector<int64_t>& indices) {
        seen.push_back(indices);
        return 0.0;
      },
      2, 1234);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], (std::vector<int64_t>{5, 4, 6, 9, 9, 9, 0, 3, 3, 5}));
  EXPECT_EQ(seen[1], (std::vector<int64_t>{3, 3, 5, 4, 2, 5, 8, 8, 0, 4}));
}

TEST(StatsTest, BootstrapPercentileRuleByHand) {
  // A statistic that ignores the sample and returns 3, 0, 2, 1 in turn:
  // sorted {0, 1, 2, 3}, R = 4. Confidence 0.5 -> q = 0.25 and 0.75;
  // h = 3 * 0.25 = 0.75 -> 0 + 0.75 * (1 - 0) = 0.75;
  // h = 3 * 0.75 = 2.25 -> 2 + 0.25 * (3 - 2) = 2.25 (numpy's "linear").
  const double order[] = {3, 0, 2, 1};
  int call = 0;
  const Interval w = BootstrapInterval(
      5, [&](const std::vector<int64_t>&) { return order[call++]; }, 4, 7, 0.5);
  EXPECT_EQ(call, 4);
  EXPECT_NEAR(w.low, 0.75, kTol);
  EXPECT_NEAR(w.high, 2.25, kTol);
  // R = 1: every quantile is the one value.
  const Interval one = BootstrapInterval(
      5, [](const std::vector<int64_t>&) { return 4.5; }, 1, 7);
  EXPECT_EQ(one.low, 4.5);
  EXPECT_EQ(one.high, 4.5);
}

TEST(StatsTest, BootstrapIsDeterministic) {
  const std::vector<double> values = SampleValues();
  const Interval a = BootstrapMeanInterval(values, 500, 42);
  const Interval b = BootstrapMeanInterval(values, 500, 42);
  // Same seed, same arithmetic in the same order: bit-identical.
  EXPECT_EQ(a.low, b.low);
  EXPECT_EQ(a.high, b.high);
  // A different seed draws different samples; with 16 distinct values and
  // 500 resamples both quantiles coinciding would be a fluke (this exact
  // pair of seeds is fixed, so the test cannot flake).
  const Interval c = BootstrapMeanInterval(values, 500, 43);
  EXPECT_TRUE(a.low != c.low || a.high != c.high);
}

TEST(StatsTest, BootstrapConstantDataIsDegenerate) {
  // Every resample's mean is 0.25 * k / k: exact in doubles (sum of k copies
  // of 0.25 is exact, k <= 2^53), so the interval is exactly {0.25, 0.25}.
  const std::vector<double> values(37, 0.25);
  const Interval w = BootstrapMeanInterval(values, 200, 5);
  EXPECT_EQ(w.low, 0.25);
  EXPECT_EQ(w.high, 0.25);
}

TEST(StatsTest, BootstrapContainsSampleMean) {
  const std::vector<double> values = SampleValues();
  const double mean = Mean(values);  // 25.4 / 16 = 1.5875.
  const Interval w = BootstrapMeanInterval(values, 1000, 1234);
  EXPECT_LT(w.low, mean);
  EXPECT_GT(w.high, mean);
  // Scale check: sd ~ 1.07, standard error ~ 1.07 / 4 = 0.27, so the 95%
  // width should be near 2 * 1.96 * 0.27 = 1.05; accept a factor of 2.
  EXPECT_GT(w.high - w.low, 0.5);
  EXPECT_LT(w.high - w.low, 2.0);
}

TEST(StatsTest, BootstrapCoverageOnUniformData) {
  // 200 data sets of 50 Uniform(0, 1) draws (true mean 0.5). std::mt19937_64's
  // raw output is fixed by the standard, so the data are the same everywhere.
  // A 95% percentile interval at n = 50 covers ~93-95%; the binomial sd of
  // the rate over 200 trials is sqrt(0.94 * 0.06 / 200) = 0.017, so
  // [0.88, 0.99] is about +-3 sd. Deterministic, so it never flakes.
  std::mt19937_64 gen(99);
  int covered = 0;
  const int trials = 200;
  for (int t = 0; t < trials; ++t) {
    std::vector<double> values(50);
    for (double& v : values) v = static_cast<double>(gen() >> 11) * 0x1.0p-53;
    const Interval w = BootstrapMeanInterval(values, 1000, static_cast<uint64_t>(t));
    if (w.low <= 0.5 && 0.5 <= w.high) ++covered;
  }
  const double rate = static_cast<double>(covered) / trials;
  EXPECT_GE(rate, 0.88);
  EXPECT_LE(rate, 0.99);
}

TEST(StatsTest, BootstrapEmptyIsZeroWithoutCallingStatistic) {
  int calls = 0;
  const Interval w = BootstrapInterval(0, [&](const std::vector<int64_t>&) { return ++calls, 1.0; });
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(w.low, 0.0);
  EXPECT_EQ(w.high, 0.0);
  const Interval m = BootstrapMeanInterval({});
  EXPECT_EQ(m.low, 0.0);
  EXPECT_EQ(m.high, 0.0);
}

TEST(StatsTest, BootstrapRejectsBadArguments) {
  auto zero = [](const std::vector<int64_t>&) { return 0.0; };
  ExpectErrorMentioning([&] { BootstrapInterval(-3, zero); }, "n is -3");
  ExpectErrorMentioning([&] { BootstrapInterval(3, zero, 0); }, "resamples is 0");
  ExpectErrorMentioning([&] { BootstrapInterval(3, zero, 10, 1, 1.5); }, "confidence is 1.5");
  ExpectErrorMentioning([] { BootstrapInterval(3, nullptr); }, "statistic is empty");
  ExpectErrorMentioning([] { BootstrapInterval(3, [](const std::vector<int64_t>&) { return std::nan(""); }); },
                        "on resample 0");
}

// ---- McNemarExact -----------------------------------------------------------

// Paired outcomes with `both` concordant-right, `neither` concordant-wrong,
// `only_a` A-only and `only_b` B-only examples, interleaved.
void MakePairs(int64_t both, int64_t neither, int64_t only_a, int64_t only_b, std::vector<bool>* a,
               std::vector<bool>* b) {
  auto push = [&](int64_t count, bool x, bool y) {
    for (int64_t i = 0; i < count; ++i) a->push_back(x), b->push_back(y);
  };
  push(both, true, true);
  push(only_a, true, false);
  push(neither, false, false);
  push(only_b, false, true);
}

McNemarResult McNemarFor(int64_t both, int64_t neither, int64_t only_a, int64_t only_b) {
  std::vector<bool> a, b;
  MakePairs(both, neither, only_a, only_b, &a, &b);
  return McNemarExact(a, b);
}

TEST(StatsTest, McNemarNoDiscordantPairsIsOne) {
  const McNemarResult r = McNemarFor(6, 4, 0, 0);
  EXPECT_EQ(r.n, 10);
  EXPECT_EQ(r.only_a, 0);
  EXPECT_EQ(r.only_b, 0);
  EXPECT_EQ(r.p_value, 1.0);
  EXPECT_EQ(McNemarExact({}, {}).p_value, 1.0);
}

TEST(StatsTest, McNemarCountsCells) {
  // a = 1 1 0 0 1, b = 1 0 1 0 0: only_a at 1 and 4, only_b at 2.
  const McNemarResult r = McNemarExact({true, true, false, false, true}, {true, false, true, false, false});
  EXPECT_EQ(r.n, 5);
  EXPECT_EQ(r.only_a, 2);
  EXPECT_EQ(r.only_b, 1);
}

TEST(StatsTest, McNemarZeroVsFive) {
  // b = 0, c = 5: p = 2 * C(5,0) / 2^5 = 2 / 32 = 0.0625.
  EXPECT_NEAR(McNemarFor(3, 2, 0, 5).p_value, 0.0625, kTol);
}

TEST(StatsTest, McNemarOneVsNine) {
  // b = 1, c = 9: p = 2 * (C(10,0) + C(10,1)) / 2^10 = 2 * 11 / 1024 = 22/1024.
  EXPECT_NEAR(McNemarFor(0, 0, 1, 9).p_value, 22.0 / 1024, kTol);
  // Swapping the systems swaps the cells, not the p-value.
  const McNemarResult swapped = McNemarFor(0, 0, 9, 1);
  EXPECT_EQ(swapped.only_a, 9);
  EXPECT_NEAR(swapped.p_value, 22.0 / 1024, kTol);
}

TEST(StatsTest, McNemarSymmetricIsCapped) {
  // b = c = 7: P[X <= 7 | 14] = 0.5 + C(14,7)/2^15 > 0.5, doubled > 1 -> 1.
  EXPECT_EQ(McNemarFor(1, 1, 7, 7).p_value, 1.0);
  // b = 3, c = 4: 2 * (1 + 7 + 21 + 35) / 128 = 1 (up to rounding in the log-space sum).
  EXPECT_NEAR(McNemarFor(0, 0, 3, 4).p_value, 1.0, kTol);
}

TEST(StatsTest, McNemarLargeMatchesExactAndNormal) {
  // b = 480, c = 520 (m = 1000): exact p from Python's integer sum
  // 2 * sum_{k<=480} C(1000,k) / 2^1000 = 0.21744829320414094. The log-space
  // sum loses ~m * eps in the exponent, so 1e-10 relative is the bound.
  const McNemarResult r = McNemarFor(100, 100, 480, 520);
  EXPECT_NEAR(r.p_value, 0.21744829320414094, 1e-10 * 0.2174);
  // Normal approximation with continuity correction:
  // z = (|b - c| - 1) / sqrt(b + c) = 39 / 31.623 = 1.2333,
  // p = erfc(z / sqrt 2) = 0.21746822614; exact and normal differ by 2e-5
  // at this m, so 1e-3 absolute is a generous agreement bound.
  EXPECT_NEAR(r.p_value, std::erfc(39 / std::sqrt(1000.0) / std::sqrt(2.0)), 1e-3);
  // b = 4000, c = 4200: exact 0.027972423571324383 (same Python sum).
  EXPECT_NEAR(McNemarFor(0, 0, 4000, 4200).p_value, 0.027972423571324383, 1e-10 * 0.028);
  // b = 10, c = 30: 2 * sum_{k<=10} C(40,k) / 2^40 = 0.0022214337732293643.
  EXPECT_NEAR(McNemarFor(0, 0, 10, 30).p_value, 0.0022214337732293643, 1e-12 * 0.0022);
  // b = 0, c = 2000: 2^-1999 underflows to 0, finitely.
  EXPECT_EQ(McNemarFor(0, 0, 0, 2000).p_value, 0.0);
}

TEST(StatsTest, McNemarLengthMismatchThrows) {
  ExpectErrorMentioning([] { McNemarExact({true, false, true}, {true}); }, "a_correct has 3");
  ExpectErrorMentioning([] { McNemarExact({true, false, true}, {true}); }, "b_correct has 1");
}

}  // namespace
}  // namespace dfar
