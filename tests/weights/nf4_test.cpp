// Tests for NF4 with double quantisation (dfar/weights/nf4.h): the golden
// values of bitsandbytes 0.50.2 on the CPU (tests/fixtures/nf4/golden.json,
// made by tools/make_nf4_golden.py), the code books, the rounding rule, the
// round-trip error bound derived below, bits per parameter, and bad input.
#include "dfar/weights/nf4.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "dfar/core/error.h"
#include "helpers/test_util.h"

namespace dfar {
namespace {

using nlohmann::json;
using testing::ErrorOf;

// The unit roundoff of float32: one rounding moves a value by at most u times its magnitude.
constexpr double kU = 1.0 / (1 << 24);

json LoadGolden() {
  const std::string path = std::string(DFAR_SOURCE_DIR) + "/tests/fixtures/nf4/golden.json";
  std::ifstream in(path);
  EXPECT_TRUE(in) << path << " is missing (tools/make_nf4_golden.py writes it)";
  json j = json::parse(in);
  EXPECT_EQ(j.at("format"), "dfar.nf4_golden");
  EXPECT_EQ(j.at("version"), 1);
  return j;
}

// The fixture prints float32 values with 9 significant digits: parsing to
// double and rounding to float gives the float32 back exactly.
std::vector<float> Floats(const json& j) {
  std::vector<float> out;
  for (const json& v : j) out.push_back(static_cast<float>(v.get<double>()));
  return out;
}

std::vector<uint8_t> FromHex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

uint64_t Fnv1a64(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001B3ull;
  return h;
}

// Case "multi_group": the generator's multi_group_input(), integers times
// powers of two, so exactly representable and rebuilt bit for bit.
std::vector<float> MultiGroupInput(int64_t n, uint64_t salt) {
  std::vector<float> w(static_cast<size_t>(n), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = i / 64;
    if (b == 100) continue;
    const uint64_t h = (static_cast<uint64_t>(i) * 2654435761ull + salt) & 0xFFFFFFFFull;
    int64_t k = static_cast<int64_t>(h % 2001 + (h >> 11) % 2001 + (h >> 21) % 2001) - 3000;
    if (i % 997 == 0) k *= 3;
    w[static_cast<size_t>(i)] = static_cast<float>(k) * std::ldexp(1.0f, -static_cast<int>(12 + b % 3));
  }
  return w;
}

template <size_t N>
double LargestGap(const std::array<float, N>& code) {
  double g = 0.0;
  for (size_t j = 0; j + 1 < N; ++j) g = std::max(g, static_cast<double>(code[j + 1]) - code[j]);
  return g;
}

// How far two float32 values may differ when one of them was rounded from a
// slightly different computation: `ulps` units in the last place of `ref`.
double Ulps(float ref, int ulps) {
  return ulps * std::max(std::fabs(ref) * 2 * kU, 1e-45);
}

// ---------------------------------------------------------------------------
// The code books.

TEST(Nf4Test, CodeBookIsSortedWithExactEndpointsAndZero) {
  const std::array<float, 16>& c = Nf4CodeBook();
  EXPECT_TRUE(std::is_sorted(c.begin(), c.end()));
  EXPECT_EQ(std::adjacent_find(c.begin(), c.end()), c.end()) << "codes must be distinct";
  EXPECT_EQ(c.front(), -1.0f);
  EXPECT_EQ(c.back(), 1.0f);
  EXPECT_EQ(c[kNf4ZeroCode], 0.0f);
  EXPECT_EQ(std::count_if(c.begin(), c.end(), [](float v) { return v < 0; }), 7);
  EXPECT_EQ(std::count_if(c.begin(), c.end(), [](float v) { return v > 0; }), 8);
}

TEST(Nf4Test, DynamicCode8IsSortedSignedAndCoversMinusOneToOne) {
  const std::array<float, 256>& c = DynamicCode8();
  EXPECT_TRUE(std::is_sorted(c.begin(), c.end()));
  EXPECT_EQ(std::adjacent_find(c.begin(), c.end()), c.end()) << "codes must be distinct";
  EXPECT_EQ(c[kCode8ZeroCode], 0.0f);
  EXPECT_EQ(c[255], 1.0f);
  // No -1: the most negative code is -(1 - 0.9 / 128); -1 is as close to it as
  // any value is to its nearest code, so the bound below holds on [-1, 1].
  EXPECT_EQ(c[0], -0.99296875f);
  EXPECT_LE(1.0 + c[0], LargestGap(c) / 2);
  for (int i = 0; i < 127; ++i) EXPECT_EQ(c[i], -c[254 - i]) << i;
  EXPECT_FLOAT_EQ(c[128], 0.55e-6f);  // Decade 10^-6 has one bin: its centre 0.55.
}

TEST(Nf4Test, CodeBooksEqualBitsandbytesBitForBit) {
  const json g = LoadGolden();
  const std::vector<float> nf4 = Floats(g.at("nf4_code"));
  const std::vector<float> code8 = Floats(g.at("dynamic_code8"));
  ASSERT_EQ(nf4.size(), 16u);
  ASSERT_EQ(code8.size(), 256u);
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(Nf4CodeBook()[i], nf4[i]) << i;
  for (size_t i = 0; i < 256; ++i) EXPECT_EQ(DynamicCode8()[i], code8[i]) << i;
}

// ---------------------------------------------------------------------------
// The rounding rule: nearest code, thresholds at float32 midpoints, ties low.

template <size_t N>
void ExpectNearestRule(const std::array<float, N>& c, uint8_t (*nearest)(float)) {
  for (size_t j = 0; j < N; ++j) EXPECT_EQ(nearest(c[j]), j) << "code " << j;
  for (size_t j = 0; j + 1 < N; ++j) {
    const float t = (c[j] + c[j + 1]) * 0.5f;
    EXPECT_EQ(nearest(t), j) << "a tie at threshold " << j << " takes the lower code";
    EXPECT_EQ(nearest(std::nextafter(t, 2.0f)), j + 1) << j;
  }
  // Off the thresholds, the rule is argmin |x - c|.
  for (int s = -1000; s <= 1000; ++s) {
    const float x = static_cast<float>(s) / 1000.0f + 1e-7f;
    size_t best = 0;
    for (size_t j = 1; j < N; ++j) {
      if (std::fabs(x - c[j]) < std::fabs(x - c[best])) best = j;
    }
    EXPECT_EQ(nearest(x), best) << "x = " << x;
  }
}

TEST(Nf4Test, NearestCodeRoundsToNearestWithTiesToTheLowerCode) {
  ExpectNearestRule(Nf4CodeBook(), &Nf4NearestCode);
  ExpectNearestRule(DynamicCode8(), &DynamicCode8NearestCode);
}

// ---------------------------------------------------------------------------
// Golden values of bitsandbytes.
//
// Codes and absmax codes must be equal: the generator chose inputs on which
// bitsandbytes' codes are the nearest ones and lie at least 1e-6 (NF4) and
// 1e-5 (8-bit) from any threshold, far more than the ulps by which the
// offset and scales below may differ.
//
// The offset is a mean: bitsandbytes sums in float32 (torch's order), dfar
// in double, so they may differ by a few ulps; the scales inherit that
// through absmax - offset. Allowed: 4 ulps each (the generator saw <= 4).
//
// Dequantised values: both sides compute w' = c4 * (c8 * s + offset) with
// the same c4, c8 and three float32 roundings, each at most u times a
// magnitude <= s + |offset| (|c4|, |c8| <= 1). With s and the offset
// differing by ds and doff, |w'_dfar - w'_bnb| <= ds + doff + 2 * 3u * (s +
// |offset|) (an FMA in either would only drop a rounding).

void ExpectGoldenStats(const json& c, const Nf4Quantized& q) {
  const std::vector<float> scales = Floats(c.at("absmax_scales"));
  ASSERT_EQ(q.absmax_scales.size(), scales.size());
  for (size_t g = 0; g < scales.size(); ++g) {
    EXPECT_NEAR(q.absmax_scales[g], scales[g], Ulps(scales[g], 4)) << "group " << g;
  }
  const float offset = static_cast<float>(c.at("absmax_offset").get<double>());
  EXPECT_NEAR(q.absmax_offset, offset, Ulps(offset, 4));
}

double DequantTolerance(const json& c, const Nf4Quantized& q) {
  const std::vector<float> scales = Floats(c.at("absmax_scales"));
  const double offset = c.at("absmax_offset").get<double>();
  double ds = 0.0, smax = 0.0;
  for (size_t g = 0; g < scales.size(); ++g) {
    ds = std::max(ds, std::fabs(static_cast<double>(q.absmax_scales[g]) - scales[g]));
    smax = std::max(smax, static_cast<double>(scales[g]));
  }
  const double doff = std::fabs(static_cast<double>(q.absmax_offset) - offset);
  return ds + doff + 6 * kU * (smax + std::fabs(offset));
}

TEST(Nf4Test, GoldenCasesWithStoredInputsMatchBitsandbytes) {
  const json g = LoadGolden();
  EXPECT_EQ(g.at("layout").at("block"), kNf4Block);
  EXPECT_EQ(g.at("layout").at("absmax_block"), kNf4AbsmaxBlock);
  int checked = 0;
  for (const json& c : g.at("cases")) {
    if (!c.contains("input")) continue;
    SCOPED_TRACE(c.at("name").get<std::string>());
    const std::vector<float> w = Floats(c.at("input"));
    ASSERT_EQ(static_cast<int64_t>(w.size()), c.at("n").get<int64_t>());
    const Nf4Quantized q = QuantizeNf4(w.data(), static_cast<int64_t>(w.size()));
    EXPECT_EQ(q.codes, FromHex(c.at("codes_hex")));
    EXPECT_EQ(q.absmax_codes, c.at("absmax_codes").get<std::vector<uint8_t>>());
    ExpectGoldenStats(c, q);
    const std::vector<float> expect = Floats(c.at("dequantized"));
    std::vector<float> out(w.size());
    DequantizeNf4(q, out.data());
    const double tol = DequantTolerance(c, q);
    for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(out[i], expect[i], tol) << "element " << i;
    ++checked;
  }
  EXPECT_EQ(checked, 2);  // "mixed" and "ties".
}

TEST(Nf4Test, GoldenMultiGroupCaseMatchesBitsandbytes) {
  const json g = LoadGolden();
  const json* found = nullptr;
  for (const json& c : g.at("cases")) {
    if (c.at("name") == "multi_group") found = &c;
  }
  ASSERT_NE(found, nullptr);
  const json& c = *found;
  const std::vector<float> w = MultiGroupInput(c.at("n").get<int64_t>(), c.at("salt").get<uint64_t>());
  const Nf4Quantized q = QuantizeNf4(w.data(), static_cast<int64_t>(w.size()));
  ASSERT_EQ(static_cast<int64_t>(q.codes.size()), c.at("codes_bytes").get<int64_t>());
  const std::vector<uint8_t> head = FromHex(c.at("codes_head_hex"));
  EXPECT_TRUE(std::equal(head.begin(), head.end(), q.codes.begin())) << "the first 32 bytes differ";
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(Fnv1a64(q.codes)));
  EXPECT_EQ(std::string(hash), c.at("codes_fnv1a64").get<std::string>());
  EXPECT_EQ(q.absmax_codes, FromHex(c.at("absmax_codes_hex")));
  ASSERT_EQ(q.absmax_scales.size(), 2u) << "two groups, the second partial";
  ExpectGoldenStats(c, q);
  std::vector<float> out(w.size());
  DequantizeNf4(q, out.data());
  const double tol = DequantTolerance(c, q);
  const json& at = c.at("dequantized_at");
  const std::vector<int64_t> index = at.at("index").get<std::vector<int64_t>>();
  const std::vector<float> value = Floats(at.at("value"));
  for (size_t k = 0; k < index.size(); ++k) {
    EXPECT_NEAR(out[static_cast<size_t>(index[k])], value[k], tol) << "element " << index[k];
  }
}

// ---------------------------------------------------------------------------
// Layout.

TEST(Nf4Test, EvenElementsTakeTheHighNibbleAndAnOddTailIsPaddedWithZerosCode) {
  const std::vector<float> w = {1.0f, -1.0f, 0.0f};
  const Nf4Quantized q = QuantizeNf4(w.data(), 3);
  ASSERT_EQ(q.codes.size(), 2u);
  EXPECT_EQ(q.codes[0], 0xF0);  // 1.0 is code 15 (high), -1.0 code 0 (low).
  EXPECT_EQ(q.codes[1], 0x77);  // 0.0 is code 7, and so is the padding.
  EXPECT_EQ(Nf4CodeAt(q, 0), 15);
  EXPECT_EQ(Nf4CodeAt(q, 1), 0);
  EXPECT_EQ(Nf4CodeAt(q, 2), kNf4ZeroCode);
}

// ---------------------------------------------------------------------------
// The round-trip error bound.
//
// Block b has absmax a, its group scale s, and dequantised absmax a'.
// NF4: x = fl(w / a) is within u of w / a and in [-1, 1]; its code c4 is
// within G4 / 2 + u of x (G4: the largest gap of the code book; + u for the
// midpoint's rounding), so |w - c4 a| <= a (G4 / 2 + 2u).
// Absmax: d = fl(a - offset) is within u s of a - offset; y = fl(d / s) within
// u of d / s and in [-1, 1]; its code c8 within G8 / 2 + u of y (also at -1:
// see DynamicCode8IsSorted...). So |c8 s - (a - offset)| <= s (G8 / 2 + 3u),
// and the two roundings of a' = fl(fl(c8 s) + offset) add u s + u |a'|:
//     |a - a'| <= s (G8 / 2 + 4u) + u |a'|.                          (1)
// Element: |w - w'| <= |w - c4 a| + |c4| |a - a'| + |w' - c4 a'|, with
// |c4| <= 1 and w' = fl(c4 a'):
//     |w - w'| <= a (G4 / 2 + 2u) + (1) + u |a'|.                     (2)
// The tighter form of (2) replaces G4 / 2 by half the gap around x.

struct RoundTripError {
  double max_abs = 0.0;          // max |w - w'|.
  double max_over_absmax = 0.0;  // max |w - w'| / a, over blocks with a > 0.
  double max_absmax = 0.0;       // max |a - a'|.
  double rms = 0.0;              // sqrt(mean (w - w')^2).
};

double HalfGapAround(float x) {
  const std::array<float, 16>& c = Nf4CodeBook();
  size_t j = 0;
  while (j + 2 < c.size() && x > c[j + 1]) ++j;
  return (static_cast<double>(c[j + 1]) - c[j]) / 2;
}

RoundTripError CheckRoundTrip(const std::vector<float>& w, int block = kNf4Block, int absmax_block = kNf4AbsmaxBlock) {
  const int64_t n = static_cast<int64_t>(w.size());
  const Nf4Quantized q = QuantizeNf4(w.data(), n, block, absmax_block);
  const std::vector<float> ahat = DequantizeNf4Absmax(q);
  std::vector<float> out(w.size());
  DequantizeNf4(q, out.data());
  const double g4 = LargestGap(Nf4CodeBook()), g8 = LargestGap(DynamicCode8());
  RoundTripError e;
  for (int64_t b = 0; b * block < n; ++b) {
    const int64_t lo = b * block, hi = std::min(n, lo + block);
    double a = 0.0;
    for (int64_t i = lo; i < hi; ++i) a = std::max(a, std::fabs(static_cast<double>(w[i])));
    const double s = q.absmax_scales[static_cast<size_t>(b / absmax_block)];
    const double ah = ahat[static_cast<size_t>(b)];
    const double absmax_bound = s * (g8 / 2 + 4 * kU) + kU * std::fabs(ah);
    EXPECT_LE(std::fabs(a - ah), absmax_bound) << "block " << b;
    e.max_absmax = std::max(e.max_absmax, std::fabs(a - ah));
    for (int64_t i = lo; i < hi; ++i) {
      const double err = std::fabs(static_cast<double>(w[i]) - out[i]);
      const double rest = absmax_bound + kU * std::fabs(ah);
      EXPECT_LE(err, a * (g4 / 2 + 2 * kU) + rest) << "element " << i;
      const double x = a > 0 ? w[i] / a : 0.0;
      EXPECT_LE(err, a * (HalfGapAround(static_cast<float>(x)) + 2 * kU) + rest) << "element " << i;
      e.max_abs = std::max(e.max_abs, err);
      e.rms += err * err;
      if (a > 0) e.max_over_absmax = std::max(e.max_over_absmax, err / a);
    }
  }
  e.rms = std::sqrt(e.rms / static_cast<double>(n));
  return e;
}

std::vector<float> Normal(int64_t n, double sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> dist(0.0, sigma);
  std::vector<float> w(static_cast<size_t>(n));
  for (float& v : w) v = static_cast<float>(dist(rng));
  return w;
}

TEST(Nf4Test, RoundTripErrorIsWithinTheDerivedBound) {
  // Weight-like, with a partial last block and a partial last group.
  std::vector<float> w = Normal(64 * 300 + 17, 0.02, 1);
  // Heavy tails and outliers; zero blocks; a tiny-scale block next to a large one.
  for (size_t i = 0; i < w.size(); i += 613) w[i] *= 40.0f;
  std::fill(w.begin() + 64 * 7, w.begin() + 64 * 8, 0.0f);
  for (size_t i = 64 * 9; i < 64 * 10; ++i) w[i] *= 1e-4f;
  CheckRoundTrip(w);
  CheckRoundTrip(w, 32, 4);   // Many groups.
  CheckRoundTrip(w, 128, 1);  // One absmax per group: scale |a - offset|.
  CheckRoundTrip(w, 1, 256);  // Every element its own absmax.
  CheckRoundTrip(Normal(5, 1.0, 2));
  CheckRoundTrip(Normal(64, 1.0, 3));  // One block: scale 0, the absmax is exact.
  std::vector<float> uniform(1000);
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  for (float& v : uniform) v = u(rng);
  CheckRoundTrip(uniform);
}

TEST(Nf4Test, SmolLm2SizedMatrixRoundTripAndBitsPerParameter) {
  // A 576 x 1536 projection of SmolLM2-135M, N(0, 0.02).
  const int64_t n = 576 * 1536;
  const std::vector<float> w = Normal(n, 0.02, 5);
  const RoundTripError e = CheckRoundTrip(w);
  const double bits = Nf4BitsPerParameter(n);
  std::printf(
      "[ nf4      ] 576x1536 N(0,0.02): %.6f bits/param, max |w - w'| %.3g, max |w - w'| / absmax %.4f, "
      "rms %.3g, max |absmax - absmax'| %.3g\n",
      bits, e.max_abs, e.max_over_absmax, e.rms, e.max_absmax);
  EXPECT_NEAR(bits, 4.127, 1e-3);
  // By (2), |w - w'| / a exceeds half NF4's largest gap (0.1519) by at most
  // about |a - a'| / a, which CheckRoundTrip bounds per block.
  // (A sanity check that the figures printed are not all zero.)
  EXPECT_GT(e.max_over_absmax, 0.1);
}

TEST(Nf4Test, AllZeroBlocksDequantiseToZero) {
  std::vector<float> w = Normal(64 * 4 + 10, 0.5, 6);
  std::fill(w.begin() + 64, w.begin() + 128, 0.0f);
  std::fill(w.begin() + 256, w.end(), 0.0f);  // The partial last block.
  const Nf4Quantized q = QuantizeNf4(w.data(), static_cast<int64_t>(w.size()));
  std::vector<float> out(w.size(), 1.0f);
  DequantizeNf4(q, out.data());
  for (size_t i = 64; i < 128; ++i) EXPECT_EQ(out[i], 0.0f) << i;
  for (size_t i = 256; i < w.size(); ++i) EXPECT_EQ(out[i], 0.0f) << i;
  for (size_t i = 64; i < 128; ++i) EXPECT_EQ(Nf4CodeAt(q, static_cast<int64_t>(i)), kNf4ZeroCode) << i;

  const std::vector<float> zeros(300, 0.0f);
  const Nf4Quantized z = QuantizeNf4(zeros.data(), 300);
  EXPECT_EQ(z.absmax_offset, 0.0f);
  EXPECT_EQ(z.absmax_scales, std::vector<float>{0.0f});
  EXPECT_EQ(z.absmax_codes, std::vector<uint8_t>(5, kCode8ZeroCode));
  std::vector<float> zout(300, 1.0f);
  DequantizeNf4(z, zout.data());
  EXPECT_EQ(zout, zeros);
}

TEST(Nf4Test, OneBlockTensorKeepsItsAbsmaxExactly) {
  // One absmax: it is the offset, the scale is 0, and a' = 0 * c8 + offset = a.
  const std::vector<float> w = {0.3f, -0.7f, 0.05f};
  const Nf4Quantized q = QuantizeNf4(w.data(), 3);
  EXPECT_EQ(q.absmax_offset, 0.7f);
  EXPECT_EQ(q.absmax_scales, std::vector<float>{0.0f});
  EXPECT_EQ(DequantizeNf4Absmax(q), std::vector<float>{0.7f});
  std::vector<float> out(3);
  DequantizeNf4(q, out.data());
  EXPECT_EQ(out[1], -0.7f);
}

// ---------------------------------------------------------------------------
// Bits per parameter.

TEST(Nf4Test, BitsPerParameterIsQloraFigureAndCountsTheRealArrays) {
  // k = 1 gives 4.1289: the per-tensor fp32 offset adds 32 / n, which QLoRA's
  // 4.127 leaves out; from k = 2 on it is below 1e-3.
  EXPECT_DOUBLE_EQ(Nf4BitsPerParameter(64 * 256), 4.12890625);
  for (int64_t k : {2, 54, 1000}) {
    const int64_t n = 64 * 256 * k;
    EXPECT_NEAR(Nf4BitsPerParameter(n), 4.127, 1e-3) << n;
    EXPECT_DOUBLE_EQ(Nf4BitsPerParameter(n), 4.0 + 8.0 / 64 + 32.0 / (64 * 256) + 32.0 / static_cast<double>(n));
  }
  for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{65}, int64_t{64 * 257 + 5}}) {
    std::vector<float> w(static_cast<size_t>(n), 0.25f);
    const Nf4Quantized q = QuantizeNf4(w.data(), n);
    const double bits = 8.0 * q.codes.size() + 8.0 * q.absmax_codes.size() + 32.0 * q.absmax_scales.size() + 32.0;
    EXPECT_DOUBLE_EQ(Nf4BitsPerParameter(n), bits / static_cast<double>(n)) << n;
  }
  EXPECT_DOUBLE_EQ(Nf4BitsPerParameter(3), (16.0 + 8 + 32 + 32) / 3);
}

// ---------------------------------------------------------------------------
// Bad input.

TEST(Nf4Test, BadInputGivesErrorsThatSayWhat) {
  const std::vector<float> ok(10, 0.5f);
  EXPECT_NE(ErrorOf([&] { QuantizeNf4(ok.data(), 0); }).find("must be positive, got 0"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { QuantizeNf4(ok.data(), -3); }).find("got -3"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { QuantizeNf4(nullptr, 10); }).find("null"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { QuantizeNf4(ok.data(), 10, 0); }).find("block (0)"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { Nf4BitsPerParameter(0); }).find("must be positive"), std::string::npos);

  std::vector<float> bad(100, 0.5f);
  bad[17] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(ErrorOf([&] { QuantizeNf4(bad.data(), 100); }),
            "QuantizeNf4: element 17 of 100 is nan; NF4 quantises finite values only");
  bad[17] = 0.0f;
  bad[99] = -std::numeric_limits<float>::infinity();
  EXPECT_NE(ErrorOf([&] { QuantizeNf4(bad.data(), 100); }).find("element 99 of 100 is -inf"), std::string::npos);

  const std::vector<float> w(300, 0.5f);
  std::vector<float> out(300);
  Nf4Quantized q = QuantizeNf4(w.data(), 300);
  q.codes.pop_back();
  EXPECT_EQ(ErrorOf([&] { DequantizeNf4(q, out.data()); }),
            "DequantizeNf4: codes has 149 bytes, but numel 300 needs 150");
  q = QuantizeNf4(w.data(), 300);
  q.absmax_codes.push_back(0);
  EXPECT_NE(ErrorOf([&] { DequantizeNf4(q, out.data()); }).find("absmax_codes has 6 entries"), std::string::npos);
  q = QuantizeNf4(w.data(), 300);
  q.absmax_scales.clear();
  EXPECT_NE(ErrorOf([&] { DequantizeNf4(q, out.data()); }).find("absmax_scales has 0 entries"), std::string::npos);
  q = QuantizeNf4(w.data(), 300);
  q.absmax_scales[0] = std::numeric_limits<float>::infinity();
  EXPECT_NE(ErrorOf([&] { DequantizeNf4(q, out.data()); }).find("absmax_scales[0] is inf"), std::string::npos);
  q = QuantizeNf4(w.data(), 300);
  q.absmax_offset = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(ErrorOf([&] { DequantizeNf4(q, out.data()); }).find("absmax_offset is nan"), std::string::npos);
  q = QuantizeNf4(w.data(), 300);
  EXPECT_NE(ErrorOf([&] { DequantizeNf4(q, nullptr); }).find("null"), std::string::npos);
}

}  // namespace
}  // namespace dfar
