// NF4: QLoRA's 4-bit NormalFloat weight quantisation with double
// quantisation of the block scales (Dettmers et al. 2023, "QLoRA"), as a
// torch-free reference on the CPU. A device implementation is checked
// against this one (tests/weights/nf4_test.cpp checks this one against
// bitsandbytes 0.50.2: tests/fixtures/nf4/golden.json).
//
// Owns: the two code books (16-value NF4, 256-value dynamic 8-bit), the
// rounding rule, and the packed layout below. QuantizeNf4() turns n floats
// into an Nf4Quantized; DequantizeNf4() turns it back.
//
// Quantisation, for the defaults block = 64, absmax_block = 256:
//   1. Split w into blocks of 64 (the last may be shorter). absmax_b = max|w|
//      over block b; each w / absmax_b in [-1, 1] gets its nearest NF4 code.
//   2. Double quantisation: offset = mean of all absmax_b; each
//      absmax_b - offset is divided by the largest |absmax - offset| of its
//      group of 256 blocks (one fp32 scale per group) and gets its nearest
//      code of the dynamic 8-bit data type.
// Dequantisation: absmax'_b = code8[c_b] * scale_g + offset, then
// w'_i = nf4[k_i] * absmax'_b (float32 throughout, in this order).
//
// Layout (bitsandbytes' byte layout, learnt from its outputs):
//   codes[i / 2] holds element i: even i in the high nibble, odd i in the low
//   one; an odd numel pads the last low nibble with kNf4ZeroCode.
//   absmax_codes[b]: one byte per block; absmax_scales[g]: one fp32 per
//   absmax_block blocks (the last group may be shorter); absmax_offset: one
//   fp32 per tensor.
//
// Why double quantisation: a per-block fp32 absmax costs 32 / 64 = 0.5 bit
// per parameter, an eighth of the 4-bit payload. Quantising the absmax
// values to 8 bits (after subtracting their mean, so that the symmetric
// 8-bit code is spent on their spread rather than on their common level)
// costs 8 / 64 = 0.125 bit, plus 32 / (64 * 256) = 0.002 bit for the fp32
// scales: 4 + 0.125 + 0.00195 = 4.127 bits per parameter (QLoRA section 3),
// against 4.5 without. The error it adds to an absmax is at most half a gap
// of the 8-bit code (0.00703) times its group's scale.
//
// Rounding: nearest code, where the thresholds are the float32 midpoints
// (c[j] + c[j+1]) * 0.5f of neighbouring codes, and the code index is the
// number of thresholds strictly below x: a value exactly on a threshold
// takes the lower code (bitsandbytes' NF4 does the same). A block whose
// absmax is 0 stores kNf4ZeroCode throughout; a group whose absmax values
// all equal the offset has scale 0 and stores kCode8ZeroCode (bitsandbytes
// on the CPU stores 0 there; both dequantise to the offset, which is then
// the exact absmax).
//
// Failure: QuantizeNf4 throws dfar::Error for n <= 0, a null pointer, a
// block size < 1, or a non-finite element (naming its index);
// DequantizeNf4 throws when the sizes of q's arrays disagree with numel,
// block and absmax_block, or its scales or offset are not finite.
// Thread-safety: every function is pure (the code books are immutable
// statics, built on first use in a thread-safe way); call from any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dfar {

constexpr int kNf4Block = 64;
constexpr int kNf4AbsmaxBlock = 256;
constexpr uint8_t kNf4ZeroCode = 7;      // Nf4CodeBook()[7] == 0.0f.
constexpr uint8_t kCode8ZeroCode = 127;  // DynamicCode8()[127] == 0.0f.

// One quantised tensor (flattened: element i of the original is element i
// here; the shape is the caller's).
struct Nf4Quantized {
  int64_t numel = 0;
  int block = kNf4Block;               // Elements per absmax. Smaller: more accurate, +8/block bits each.
  int absmax_block = kNf4AbsmaxBlock;  // Absmax values per fp32 scale.
  std::vector<uint8_t> codes;          // ceil(numel / 2) bytes; element 2i high nibble, 2i+1 low nibble.
  std::vector<uint8_t> absmax_codes;   // ceil(numel / block): DynamicCode8() index of each block's absmax.
  std::vector<float> absmax_scales;    // ceil(blocks / absmax_block): max |absmax - offset| per group.
  float absmax_offset = 0.0f;          // Mean of all absmax values, subtracted before the 8-bit step.
};

// The array sizes of an Nf4Quantized, in one place: QuantizeNf4 allocates
// them, DequantizeNf4 checks them, Nf4BitsPerParameter counts them.
struct Nf4Layout {
  int64_t code_bytes = 0;  // ceil(n / 2).
  int64_t blocks = 0;      // ceil(n / block).
  int64_t groups = 0;      // ceil(blocks / absmax_block).
};
// Throws dfar::Error for n <= 0, block < 1 or absmax_block < 1.
Nf4Layout Nf4LayoutFor(int64_t n, int block = kNf4Block, int absmax_block = kNf4AbsmaxBlock);

// The NF4 data type, ascending: 7 negative values from -1, an exact 0, and 8
// positive values up to 1 (quantiles of N(0,1); derivation in nf4.cpp).
const std::array<float, 16>& Nf4CodeBook();

// The signed dynamic 8-bit data type of 8-bit optimizers, bit for bit the
// table that bitsandbytes' double quantisation uses, ascending: 127
// negative values from -0.99297, 0, 127 positive values, and 1 (there is no
// -1). Construction in nf4.cpp.
const std::array<float, 256>& DynamicCode8();

// The nearest-code index of x under the rounding rule above (NaN: 0).
uint8_t Nf4NearestCode(float x);
uint8_t DynamicCode8NearestCode(float x);

// Quantises w[0..n). Blocks and groups other than 64 / 256 are allowed (the
// format records them), but only the defaults are checked against
// bitsandbytes.
Nf4Quantized QuantizeNf4(const float* w, int64_t n, int block = kNf4Block, int absmax_block = kNf4AbsmaxBlock);

// Writes q.numel floats to out.
void DequantizeNf4(const Nf4Quantized& q, float* out);

// The dequantised absmax of each block (absmax'_b above): what DequantizeNf4
// multiplies the NF4 values by.
std::vector<float> DequantizeNf4Absmax(const Nf4Quantized& q);

// The NF4 code index of element i (0 <= i < q.numel, unchecked).
inline uint8_t Nf4CodeAt(const Nf4Quantized& q, int64_t i) {
  const uint8_t byte = q.codes[static_cast<size_t>(i / 2)];
  return i % 2 == 0 ? static_cast<uint8_t>(byte >> 4) : static_cast<uint8_t>(byte & 0x0F);
}

// Storage bits per parameter of an n-element tensor: the packed codes (a
// padded odd nibble included), one byte per block, one fp32 scale per
// group and the fp32 offset, over n. The code books are shared by every
// tensor and not counted. For n = 64 * 256 * k it is 4 + 0.125 + 32 / 16384
// + 32 / n exactly: QLoRA's 4.127 to 1e-3 from k = 2 on (the per-tensor
// offset's 32 / n is what the paper's figure leaves out); 4.126989 for a
// 576 x 1536 SmolLM2-135M matrix (k = 54).
double Nf4BitsPerParameter(int64_t n, int block = kNf4Block, int absmax_block = kNf4AbsmaxBlock);

}  // namespace dfar
