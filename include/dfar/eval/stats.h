// Evaluation statistics: uncertainty on every figure and a paired test.
//
// Owns: confidence intervals for the numbers an eval report carries (a
// Wilson interval for a proportion, a seeded bootstrap percentile interval
// for any statistic of the examples) and the exact McNemar test for "model A
// and model B differ in accuracy on the same examples". Torch-free.
// - `confidence` is the two-sided coverage, strictly inside (0, 1): 0.95
//   means the interval leaves 2.5% in each tail.
// - Bootstrap resampling is deterministic across platforms and standard
//   libraries: dfar's own generator and integer rule (below), never
//   std::uniform_int_distribution.
// Failure: dfar::Error naming the bad argument (a confidence outside (0, 1),
// successes outside [0, n], a negative n, resamples < 1, a non-finite
// bootstrap statistic, paired vectors of different lengths).
// Thread-safety: pure functions; the bootstrap calls `statistic` on the
// calling thread only, once per resample, in resample order.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace dfar {

struct Interval {
  double low = 0;
  double high = 0;
};

// The standard normal quantile: x with Phi(x) = p, for p strictly inside
// (0, 1). Acklam's rational approximation (relative error < 1.15e-9), then
// one Halley step against std::erfc, which brings it to within a few ulp
// (measured <= 3.5e-16 relative against Python's statistics.NormalDist;
// tested to 1e-14). For subnormal p (< ~2.2e-308) the step would overflow
// and is skipped, leaving Acklam's 1.15e-9.
double NormalQuantile(double p);

// Wilson score interval for a binomial proportion successes / n, with
// z = NormalQuantile((1 + confidence) / 2):
//   center = (p + z^2/(2n)) / (1 + z^2/n)
//   half   = z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/(4n^2)),  p = successes / n.
// Exact at the edges: low == 0 for 0 successes, high == 1 for n successes
// (the formula alone leaves rounding residue there). n == 0 gives {0, 1}:
// nothing observed, every proportion is possible.
Interval WilsonInterval(int64_t successes, int64_t n, double confidence = 0.95);

// Bootstrap percentile interval of `statistic` over n examples.
//
// Draws `resamples` samples of n indices in [0, n) with replacement and
// calls statistic(indices) on each; returns the (1 - confidence) / 2 and
// (1 + confidence) / 2 quantiles of the R = resamples values, by linear
// interpolation (numpy's default "linear" method): with the values sorted
// v[0] <= ... <= v[R-1], quantile q is v[j] + f * (v[j+1] - v[j]) where
// h = (R - 1) * q, j = floor(h), f = h - j.
//
// Random stream: splitmix64 (Steele et al. 2014) seeded with `seed`; an
// index below n is the first draw x >= 2^64 mod n, taken as x mod n
// (rejection keeps it unbiased). Indices are drawn in order, resample after
// resample, from the one stream. So (n, resamples, seed) fixes every sample.
//
// n == 0 gives {0, 0} without calling `statistic` (metrics.h's convention: a
// figure over no examples is 0). A statistic that returns NaN or infinity
// throws, naming the resample.
Interval BootstrapInterval(int64_t n,
                           const std::function<double(const std::vector<int64_t>& sample_indices)>& statistic,
                           int resamples = 1000, uint64_t seed = 1234, double confidence = 0.95);

// BootstrapInterval of the mean of `values` (summed in index order). Empty
// `values` gives {0, 0}.
Interval BootstrapMeanInterval(const std::vector<double>& values, int resamples = 1000, uint64_t seed = 1234,
                               double confidence = 0.95);

// Exact two-sided McNemar test on paired binary outcomes (a_correct[i] and
// b_correct[i] are the two systems on example i). With b = only_a (A right,
// B wrong) and c = only_b, the discordant pairs are Binomial(b + c, 1/2)
// under H0, and
//   p_value = min(1, 2 * P[X <= min(b, c)]),  X ~ Binomial(b + c, 1/2);
// p_value = 1 when b + c == 0. The largest tail term (at min(b, c)) is
// taken in log space and the rest as ratios to it (O(min(b, c)) work), so
// b + c in the millions neither overflows nor underflows early; a p below
// what a double holds (~1e-308) reads 0.
struct McNemarResult {
  int64_t n = 0;       // Paired examples.
  int64_t only_a = 0;  // A right, B wrong.
  int64_t only_b = 0;  // B right, A wrong.
  double p_value = 1;
};

McNemarResult McNemarExact(const std::vector<bool>& a_correct, const std::vector<bool>& b_correct);

}  // namespace dfar
