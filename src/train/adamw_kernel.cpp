#include "adamw_kernel.h"

#include <cmath>
#include <cstring>

namespace dfar::kernels {
namespace {

inline float Bf16ToFloat(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &wide, sizeof f);
  return f;
}

// Round to nearest even, as c10::BFloat16 and torch's casts do; NaN stays NaN.
inline uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  return f != f ? uint16_t{0x7fc0} : static_cast<uint16_t>(rounded);
}

inline float Update(float p, float g, float& m, float& v, const AdamWStep& k) {
  p *= 1.0f - k.lr_wd;
  const float mi = m + k.one_minus_beta1 * (g - m);
  const float vi = v * k.beta2 + k.one_minus_beta2 * (g * g);
  m = mi;
  v = vi;
  return p + (-k.step_size) * (mi / (std::sqrt(vi) / k.sqrt_bc2 + k.eps));
}

}  // namespace

void AdamWFp32(float* __restrict param, const float* __restrict grad, float* __restrict m, float* __restrict v,
               int64_t n, const AdamWStep& k) {
  for (int64_t i = 0; i < n; ++i) param[i] = Update(param[i], grad[i], m[i], v[i], k);
}

void AdamWBf16(uint16_t* __restrict param, const uint16_t* __restrict grad, float* __restrict master,
               float* __restrict m, float* __restrict v, int64_t n, const AdamWStep& k) {
  for (int64_t i = 0; i < n; ++i) {
    const float p = Update(master[i], Bf16ToFloat(grad[i]), m[i], v[i], k);
    master[i] = p;
    param[i] = FloatToBf16(p);
  }
}

void AdamWBf16Fp32Grad(uint16_t* __restrict param, const float* __restrict grad, float* __restrict master,
                       float* __restrict m, float* __restrict v, int64_t n, const AdamWStep& k) {
  for (int64_t i = 0; i < n; ++i) {
    const float p = Update(master[i], grad[i], m[i], v[i], k);
    master[i] = p;
    param[i] = FloatToBf16(p);
  }
}

}  // namespace dfar::kernels
