#include "dfar/eval/stats.h"

#include <algorithm>
#include <cmath>

#include "dfar/core/error.h"
#include "dfar/data/sampler.h"  // Rng: SplitMix64, the same stream on every platform.

namespace dfar {
namespace {

void CheckConfidence(double confidence, const char* who) {
  // Written so that NaN fails too.
  DFAR_CHECK(confidence > 0 && confidence < 1, who, ": confidence is ", confidence,
             "; expected a value strictly between 0 and 1");
}

// Acklam's approximation for the lower half, p in (0, 0.5]. The split at
// 0.02425 and the coefficients are his; the two branches meet continuously.
double AcklamLower(double p) {
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  if (p < 0.02425) {
    const double q = std::sqrt(-2 * std::log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  const double q = p - 0.5;
  const double r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

// One Halley step on Phi(x) - p. Phi is evaluated as erfc(-x/sqrt2)/2, which
// keeps full relative precision for x < 0, the only side we refine on. Far in
// the tail (p subnormal) 1/pdf overflows; Acklam's value is kept there.
double HalleyRefine(double x, double p) {
  const double e = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;
  constexpr double kSqrt2Pi = 2.5066282746310002;  // sqrt(2 * pi); M_PI is not standard C++.
  const double u = e * kSqrt2Pi * std::exp(x * x / 2);
  const double refined = x - u / (1 + x * u / 2);
  return std::isfinite(refined) ? refined : x;
}

// numpy's default ("linear") quantile of sorted values.
double LinearQuantile(const std::vector<double>& sorted, double q) {
  const double h = static_cast<double>(sorted.size() - 1) * q;
  const size_t j = static_cast<size_t>(std::floor(h));
  if (j + 1 >= sorted.size()) return sorted.back();
  return sorted[j] + (h - static_cast<double>(j)) * (sorted[j + 1] - sorted[j]);
}

// log C(m, k) as the sum of log((m - k + i) / i): no lgamma, whose POSIX
// version writes the global signgam and so is not safe to call from threads.
double LogChoose(int64_t m, int64_t k) {
  double sum = 0;
  for (int64_t i = 1; i <= k; ++i) sum += std::log(static_cast<double>(m - k + i) / static_cast<double>(i));
  return sum;
}

// P[X <= k], X ~ Binomial(m, 1/2), for k <= m / 2. The largest term (i = k)
// is taken in log space, and the rest as ratios to it, so 2^-m never appears
// on its own: term(i-1) / term(i) = i / (m - i + 1) < 1 here.
double BinomHalfLowerTail(int64_t k, int64_t m) {
  const double log_top = LogChoose(m, k) - static_cast<double>(m) * std::log(2.0);
  double ratio = 1;
  double sum = 1;
  for (int64_t i = k; i >= 1; --i) {
    ratio *= static_cast<double>(i) / static_cast<double>(m - i + 1);
    sum += ratio;
  }
  return std::exp(log_top + std::log(sum));
}

}  // namespace

double NormalQuantile(double p) {
  DFAR_CHECK(p > 0 && p < 1, "NormalQuantile: p is ", p, "; expected a value strictly between 0 and 1");
  // For p > 0.5, 1 - p is exact (Sterbenz), and the lower-tail refinement
  // keeps its relative precision; refining near 1 directly would not.
  if (p > 0.5) return -NormalQuantile(1 - p);
  return HalleyRefine(AcklamLower(p), p);
}

Interval WilsonInterval(int64_t successes, int64_t n, double confidence) {
  CheckConfidence(confidence, "WilsonInterval");
  DFAR_CHECK(n >= 0, "WilsonInterval: n is ", n, "; expected n >= 0");
  DFAR_CHECK(successes >= 0 && successes <= n, "WilsonInterval: successes is ", successes, "; expected 0..n (n = ", n,
             ")");
  if (n == 0) return {0, 1};
  const double z = -NormalQuantile((1 - confidence) / 2);
  const double nd = static_cast<double>(n);
  const double p = static_cast<double>(successes) / nd;
  const double z2n = z * z / nd;
  const double denom = 1 + z2n;
  const double center = (p + z2n / 2) / denom;
  const double half = z / denom * std::sqrt(p * (1 - p) / nd + z2n / (4 * nd));
  Interval out{std::max(0.0, center - half), std::min(1.0, center + half)};
  // At the edges the bound is 0 (or 1) in exact arithmetic but not in
  // doubles: 0 of 10 leaves low = 2.8e-17 otherwise.
  if (successes == 0) out.low = 0;
  if (successes == n) out.high = 1;
  return out;
}

Interval BootstrapInterval(int64_t n,
                           const std::function<double(const std::vector<int64_t>& sample_indices)>& statistic,
                           int resamples, uint64_t seed, double confidence) {
  CheckConfidence(confidence, "BootstrapInterval");
  DFAR_CHECK(n >= 0, "BootstrapInterval: n is ", n, "; expected n >= 0");
  DFAR_CHECK(resamples >= 1, "BootstrapInterval: resamples is ", resamples, "; expected at least 1");
  DFAR_CHECK(static_cast<bool>(statistic), "BootstrapInterval: statistic is empty");
  if (n == 0) return {0, 0};

  Rng rng(seed);
  std::vector<int64_t> indices(static_cast<size_t>(n));
  std::vector<double> values;
  values.reserve(static_cast<size_t>(resamples));
  for (int r = 0; r < resamples; ++r) {
    for (int64_t& index : indices) index = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(n)));
    const double value = statistic(indices);
    DFAR_CHECK(std::isfinite(value), "BootstrapInterval: statistic returned ", value, " on resample ", r,
               "; expected a finite value");
    values.push_back(value);
  }
  std::sort(values.begin(), values.end());
  const double tail = (1 - confidence) / 2;
  return {LinearQuantile(values, tail), LinearQuantile(values, 1 - tail)};
}

Interval BootstrapMeanInterval(const std::vector<double>& values, int resamples, uint64_t seed, double confidence) {
  auto mean = [&values](const std::vector<int64_t>& indices) {
    double sum = 0;
    for (int64_t i : indices) sum += values[static_cast<size_t>(i)];
    return sum / static_cast<double>(indices.size());
  };
  return BootstrapInterval(static_cast<int64_t>(values.size()), mean, resamples, seed, confidence);
}

McNemarResult McNemarExact(const std::vector<bool>& a_correct, const std::vector<bool>& b_correct) {
  DFAR_CHECK(a_correct.size() == b_correct.size(), "McNemarExact: a_correct has ", a_correct.size(),
             " outcomes but b_correct has ", b_correct.size(), "; expected equal lengths (paired examples)");
  McNemarResult result;
  result.n = static_cast<int64_t>(a_correct.size());
  for (size_t i = 0; i < a_correct.size(); ++i) {
    if (a_correct[i] && !b_correct[i]) ++result.only_a;
    if (b_correct[i] && !a_correct[i]) ++result.only_b;
  }
  const int64_t discordant = result.only_a + result.only_b;
  if (discordant == 0) return result;
  const double tail = BinomHalfLowerTail(std::min(result.only_a, result.only_b), discordant);
  result.p_value = std::min(1.0, 2 * tail);
  return result;
}

}  // namespace dfar
