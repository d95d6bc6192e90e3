// The fused CPU AdamW update over raw arrays (see optimizer.cpp).
//
// Why a file of its own: it is compiled with -fno-math-errno (and without
// libtorch's precompiled header), so that GCC vectorises the square root;
// with errno semantics the loop stays scalar and runs ~2x slower.
#pragma once

#include <cstdint>

namespace dfar::kernels {

// The per-step constants, in the order torch.optim.AdamW applies them.
struct AdamWStep {
  float one_minus_beta1, beta2, one_minus_beta2, sqrt_bc2, eps, step_size, lr_wd;
};

// Elements [0, n): p *= 1 - lr_wd; m += (1 - b1)(g - m);
// v = b2 v + (1 - b2) g^2; p -= step_size * m / (sqrt(v) / sqrt_bc2 + eps).
// One call covers a piece of one decay class (lr_wd = 0 where decay does not
// apply). fp32 parameters are updated in place; bf16 ones (raw bits) through
// their fp32 master copy, rounded to nearest even afterwards; their
// gradients are bf16 or, reduced in fp32, fp32.
void AdamWFp32(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWStep& k);
void AdamWBf16(uint16_t* param, const uint16_t* grad, float* master, float* m, float* v, int64_t n, const AdamWStep& k);
void AdamWBf16Fp32Grad(uint16_t* param, const float* grad, float* master, float* m, float* v, int64_t n,
                       const AdamWStep& k);

}  // namespace dfar::kernels
