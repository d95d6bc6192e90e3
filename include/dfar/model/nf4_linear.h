// QLoRA's frozen base: a linear layer's weight stored as NF4 on its device
// (weights/nf4.h: 4-bit NormalFloat, blocks of 64, double-quantised
// absmax), dequantised into the compute dtype for each matmul.
//
// Owns: the packed codes, the 8-bit absmax codes, the fp32 group scales
// and offset, and the two code books, as tensors on the weight's device.
// Quantisation runs on the host through the reference quantiser
// (QuantizeNf4, checked against bitsandbytes), one weight at a time;
// dequantisation is a few tensor ops on the device, equal to the reference
// DequantizeNf4 (the same fp32 operations in the same order).
//
// Nf4Linear(x, w) = x W^T with W dequantised in forward and again in
// backward: autograd keeps only the quantised weight, never a dense copy,
// so a frozen 7B base costs ~4.13 bits per weight through the whole step.
// The weight gets no gradient (it is frozen: LoRA trains adapters beside it).
// Thread-safety: immutable after Quantize; any thread.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

namespace dfar {

struct Nf4Weight {
  std::vector<int64_t> shape;
  int64_t numel = 0;
  int block = 64, absmax_block = 256;
  torch::Tensor codes;          // uint8 [ceil(numel / 2)]: element 2i in the high nibble.
  torch::Tensor absmax_codes;   // uint8 [blocks].
  torch::Tensor absmax_scales;  // fp32 [groups].
  double absmax_offset = 0;     // fp32 value.
  torch::Tensor code4, code8;   // fp32 [16], [256]: the code books.

  // Bytes of the quantised weight (codes, absmax codes, scales, offset).
  int64_t bytes() const;
};

// Quantises `w` (any dtype and device; read as fp32 on the host) to NF4 on
// w's device.
std::shared_ptr<Nf4Weight> QuantizeNf4Weight(const torch::Tensor& w);

// The dequantised weight in `dtype`, shaped as the original, on q's device.
torch::Tensor DequantizeNf4Weight(const Nf4Weight& q, torch::ScalarType dtype);

// Moves q's tensors to `device` in place (the codes and books keep their dtypes).
void MoveNf4Weight(Nf4Weight& q, const torch::Device& device);

// x W^T for W = dequantised q (in x's dtype); differentiable in x only.
torch::Tensor Nf4Linear(const torch::Tensor& x, const std::shared_ptr<Nf4Weight>& q);

}  // namespace dfar
