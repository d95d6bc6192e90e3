// NF4 with double quantisation: see include/dfar/weights/nf4.h for the
// format. This file is the reference a device implementation must equal, so
// every float operation is spelled out in the order the header documents,
// one rounding per statement.
#include "dfar/weights/nf4.h"

#include <algorithm>
#include <cmath>

#include "dfar/core/error.h"

namespace dfar {
namespace {

// NF4's 16 values are facts, written with 9 significant digits (enough to
// name each float32 exactly). They are QLoRA's construction: quantiles of
// N(0,1) at probabilities evenly spaced from d down to 0.5, 9 points for the
// positive half (the last, 0.5, gives the median 0 and is dropped: 8
// values, 1.0 included) and 8 points for the negative half (7 values, -1.0
// included), one exact 0 shared by both, and every value divided by the
// largest quantile, Q(d), so that the endpoints are exactly -1 and 1.
// Asymmetry is the price of an exact 0 with an even number of codes.
// d = (1 - 1/(2*15) + 1 - 1/(2*16)) / 2 = 0.9677083 keeps Q(d) finite.
// These float32 values are bitsandbytes' table; tools/make_nf4_golden.py
// recomputes them from the quantiles (agreement 2e-7) and the golden test
// checks them bit for bit.
constexpr std::array<float, 16> kNf4Code = {
    -1.0f,         -0.696192801f, -0.525073051f, -0.394917488f, -0.284441382f, -0.18477343f, -0.0910500363f, 0.0f,
    0.0795802996f, 0.160930201f,  0.246112302f,  0.337915242f,  0.440709829f,  0.562617004f, 0.722956836f,   1.0f};

// n evenly spaced float32 values from start to end, the way torch's float32
// linspace computes them (probed, not read): a float32 step, the first half
// counted up from start and the second half down from end, each value
// rounded once. The products and sums are exact in double (a 24-bit step
// times an index below 2^7, aligned within 53 bits), so the cast is that
// one rounding.
std::vector<float> LinspaceF32(float start, float end, int n) {
  const float step = (end - start) / static_cast<float>(n - 1);
  std::vector<float> out(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const double v = i < n / 2 ? static_cast<double>(start) + static_cast<double>(step) * i
                               : static_cast<double>(end) - static_cast<double>(step) * (n - 1 - i);
    out[static_cast<size_t>(i)] = static_cast<float>(v);
  }
  return out;
}

// The dynamic 8-bit data type (Dettmers et al. 2022, "8-bit Optimizers via
// Block-wise Quantization"): a sign, a decade exponent, and a linear
// fraction whose resolution shrinks as the exponent grows. Decade level e =
// 0..6 has magnitude 10^(e-6) and 2^e bins that split [0.1, 1] evenly; each
// bin contributes its centre times 10^(e-6), with both signs: 1 + 2 + ... +
// 64 = 127 values per sign. Then 0 and +1 (not -1) make 256. Every step is
// float32, as bitsandbytes evaluates it, so that the table is its table bit
// for bit (exactly rounded centres would differ in 72 entries by one ulp).
std::array<float, 256> BuildDynamicCode8() {
  // 10^(e-6) as double literals, each rounded once to float32.
  constexpr double kDecades[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
  std::vector<float> values = {0.0f, 1.0f};
  for (int e = 0; e <= 6; ++e) {
    const float decade = static_cast<float>(kDecades[e]);
    const std::vector<float> edges = LinspaceF32(0.1f, 1.0f, (1 << e) + 1);
    for (size_t j = 0; j + 1 < edges.size(); ++j) {
      const float centre = (edges[j] + edges[j + 1]) / 2.0f;
      const float value = centre * decade;
      values.push_back(value);
      values.push_back(-value);
    }
  }
  std::sort(values.begin(), values.end());
  std::array<float, 256> code{};
  std::copy(values.begin(), values.end(), code.begin());
  return code;
}

// Thresholds between neighbouring codes: float32 midpoints, so that the
// rule is exactly reproducible on any device ((a + b) * 0.5f rounds once).
template <size_t N>
std::array<float, N - 1> Midpoints(const std::array<float, N>& code) {
  std::array<float, N - 1> t{};
  for (size_t j = 0; j + 1 < N; ++j) t[j] = (code[j] + code[j + 1]) * 0.5f;
  return t;
}

// The number of thresholds strictly below x: a tie takes the lower code.
template <size_t M>
uint8_t CountBelow(const std::array<float, M>& thresholds, float x) {
  return static_cast<uint8_t>(std::lower_bound(thresholds.begin(), thresholds.end(), x) - thresholds.begin());
}

void CheckFinite(const float* w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    DFAR_CHECK(std::isfinite(w[i]), "QuantizeNf4: element ", i, " of ", n, " is ", w[i],
               "; NF4 quantises finite values only");
  }
}

void SetNibble(std::vector<uint8_t>& codes, int64_t i, uint8_t k) {
  uint8_t& byte = codes[static_cast<size_t>(i / 2)];
  byte = i % 2 == 0 ? static_cast<uint8_t>((byte & 0x0F) | (k << 4)) : static_cast<uint8_t>((byte & 0xF0) | k);
}

// Step 1: each block's absmax, and the NF4 code of every w / absmax.
std::vector<float> QuantizeBlocks(const float* w, int64_t n, int block, std::vector<uint8_t>& codes) {
  const int64_t blocks = (n + block - 1) / block;
  std::vector<float> absmax(static_cast<size_t>(blocks));
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = b * block, hi = std::min(n, lo + block);
    float a = 0.0f;
    for (int64_t i = lo; i < hi; ++i) a = std::max(a, std::fabs(w[i]));
    absmax[static_cast<size_t>(b)] = a;
    // a == 0: every element is 0, and 0/0 must not decide the code.
    for (int64_t i = lo; i < hi; ++i) SetNibble(codes, i, a == 0.0f ? kNf4ZeroCode : Nf4NearestCode(w[i] / a));
  }
  return absmax;
}

// The offset: the mean taken in double and rounded once, so that it does
// not depend on summation order (bitsandbytes takes torch's float32 mean;
// the two differ by about an ulp, which the golden test allows).
float MeanOf(const std::vector<float>& v) {
  double sum = 0.0;
  for (float x : v) sum += x;
  return static_cast<float>(sum / static_cast<double>(v.size()));
}

// Step 2: the absmax values to 8 bits, around their mean, one scale per
// group. d = absmax - offset is one float32 rounding, recomputed
// identically in both passes.
void DoubleQuantize(const std::vector<float>& absmax, Nf4Quantized& q) {
  q.absmax_offset = MeanOf(absmax);
  const int64_t blocks = static_cast<int64_t>(absmax.size());
  for (int64_t g = 0; g * q.absmax_block < blocks; ++g) {
    const int64_t lo = g * q.absmax_block, hi = std::min(blocks, lo + q.absmax_block);
    float scale = 0.0f;
    for (int64_t b = lo; b < hi; ++b) scale = std::max(scale, std::fabs(absmax[b] - q.absmax_offset));
    q.absmax_scales[static_cast<size_t>(g)] = scale;
    for (int64_t b = lo; b < hi; ++b) {
      const float d = absmax[b] - q.absmax_offset;
      // scale == 0: every d is 0 (Sterbenz), and code8 * 0 + offset is the exact absmax.
      q.absmax_codes[static_cast<size_t>(b)] = scale == 0.0f ? kCode8ZeroCode : DynamicCode8NearestCode(d / scale);
    }
  }
}

void CheckQuantized(const Nf4Quantized& q) {
  const Nf4Layout layout = Nf4LayoutFor(q.numel, q.block, q.absmax_block);
  DFAR_CHECK(static_cast<int64_t>(q.codes.size()) == layout.code_bytes, "DequantizeNf4: codes has ", q.codes.size(),
             " bytes, but numel ", q.numel, " needs ", layout.code_bytes);
  DFAR_CHECK(static_cast<int64_t>(q.absmax_codes.size()) == layout.blocks, "DequantizeNf4: absmax_codes has ",
             q.absmax_codes.size(), " entries, but numel ", q.numel, " in blocks of ", q.block, " needs ",
             layout.blocks);
  DFAR_CHECK(static_cast<int64_t>(q.absmax_scales.size()) == layout.groups, "DequantizeNf4: absmax_scales has ",
             q.absmax_scales.size(), " entries, but ", layout.blocks, " blocks in groups of ", q.absmax_block, " need ",
             layout.groups);
  for (size_t g = 0; g < q.absmax_scales.size(); ++g) {
    DFAR_CHECK(std::isfinite(q.absmax_scales[g]) && q.absmax_scales[g] >= 0.0f, "DequantizeNf4: absmax_scales[", g,
               "] is ", q.absmax_scales[g], "; scales are finite and >= 0");
  }
  DFAR_CHECK(std::isfinite(q.absmax_offset), "DequantizeNf4: absmax_offset is ", q.absmax_offset);
}

}  // namespace

Nf4Layout Nf4LayoutFor(int64_t n, int block, int absmax_block) {
  DFAR_CHECK(n > 0, "NF4: the element count must be positive, got ", n);
  DFAR_CHECK(block >= 1 && absmax_block >= 1, "NF4: block (", block, ") and absmax_block (", absmax_block,
             ") must be at least 1");
  Nf4Layout layout;
  layout.code_bytes = (n + 1) / 2;
  layout.blocks = (n + block - 1) / block;
  layout.groups = (layout.blocks + absmax_block - 1) / absmax_block;
  return layout;
}

const std::array<float, 16>& Nf4CodeBook() {
  return kNf4Code;
}

const std::array<float, 256>& DynamicCode8() {
  static const std::array<float, 256> code = BuildDynamicCode8();
  return code;
}

uint8_t Nf4NearestCode(float x) {
  static const std::array<float, 15> thresholds = Midpoints(kNf4Code);
  return CountBelow(thresholds, x);
}

uint8_t DynamicCode8NearestCode(float x) {
  static const std::array<float, 255> thresholds = Midpoints(DynamicCode8());
  return CountBelow(thresholds, x);
}

Nf4Quantized QuantizeNf4(const float* w, int64_t n, int block, int absmax_block) {
  const Nf4Layout layout = Nf4LayoutFor(n, block, absmax_block);
  DFAR_CHECK(w != nullptr, "QuantizeNf4: the input pointer is null (n = ", n, ")");
  CheckFinite(w, n);
  Nf4Quantized q;
  q.numel = n;
  q.block = block;
  q.absmax_block = absmax_block;
  // 0x77: both nibbles kNf4ZeroCode, so an odd tail is padded with 0.0's code.
  q.codes.assign(static_cast<size_t>(layout.code_bytes), static_cast<uint8_t>(kNf4ZeroCode << 4 | kNf4ZeroCode));
  q.absmax_codes.assign(static_cast<size_t>(layout.blocks), 0);
  q.absmax_scales.assign(static_cast<size_t>(layout.groups), 0.0f);
  DoubleQuantize(QuantizeBlocks(w, n, block, q.codes), q);
  return q;
}

std::vector<float> DequantizeNf4Absmax(const Nf4Quantized& q) {
  CheckQuantized(q);
  const std::array<float, 256>& code8 = DynamicCode8();
  std::vector<float> absmax(q.absmax_codes.size());
  for (size_t b = 0; b < absmax.size(); ++b) {
    const float scaled = code8[q.absmax_codes[b]] * q.absmax_scales[b / static_cast<size_t>(q.absmax_block)];
    absmax[b] = scaled + q.absmax_offset;
  }
  return absmax;
}

void DequantizeNf4(const Nf4Quantized& q, float* out) {
  const std::vector<float> absmax = DequantizeNf4Absmax(q);
  DFAR_CHECK(out != nullptr, "DequantizeNf4: the output pointer is null (numel = ", q.numel, ")");
  for (int64_t i = 0; i < q.numel; ++i) out[i] = kNf4Code[Nf4CodeAt(q, i)] * absmax[static_cast<size_t>(i / q.block)];
}

double Nf4BitsPerParameter(int64_t n, int block, int absmax_block) {
  const Nf4Layout layout = Nf4LayoutFor(n, block, absmax_block);
  const int64_t bits = layout.code_bytes * 8 + layout.blocks * 8 + layout.groups * 32 + 32;
  return static_cast<double>(bits) / static_cast<double>(n);
}

}  // namespace dfar
