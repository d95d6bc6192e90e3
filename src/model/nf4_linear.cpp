#include "dfar/model/nf4_linear.h"

#include <cstring>

#include "dfar/core/error.h"
#include "dfar/weights/nf4.h"

namespace dfar {
namespace {

template <typename T, size_t N>
torch::Tensor TableOn(const std::array<T, N>& table, const torch::Device& device) {
  return torch::from_blob(const_cast<T*>(table.data()), {static_cast<int64_t>(N)}, torch::kFloat).clone().to(device);
}

template <typename T>
torch::Tensor BytesOn(const std::vector<T>& v, torch::ScalarType dtype, const torch::Device& device) {
  auto t = torch::empty({static_cast<int64_t>(v.size())}, dtype);
  std::memcpy(t.data_ptr(), v.data(), v.size() * sizeof(T));
  return t.to(device);
}

// Identity on the forward's saved state: recomputes W in backward.
struct Nf4LinearFn : public torch::autograd::Function<Nf4LinearFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, int64_t weight) {
    ctx->saved_data["w"] = weight;
    const auto* q = reinterpret_cast<const Nf4Weight*>(weight);
    return torch::nn::functional::linear(x, DequantizeNf4Weight(*q, x.scalar_type()));
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto* q = reinterpret_cast<const Nf4Weight*>(ctx->saved_data["w"].toInt());
    const auto& dy = grads[0];
    return {torch::matmul(dy, DequantizeNf4Weight(*q, dy.scalar_type())), torch::Tensor()};
  }
};

}  // namespace

int64_t Nf4Weight::bytes() const {
  return codes.nbytes() + absmax_codes.nbytes() + absmax_scales.nbytes() + 4;
}

std::shared_ptr<Nf4Weight> QuantizeNf4Weight(const torch::Tensor& w) {
  torch::NoGradGuard no_grad;
  const auto host = w.detach().to(torch::kCPU, torch::kFloat).contiguous();
  const Nf4Quantized q = QuantizeNf4(host.data_ptr<float>(), host.numel());
  auto out = std::make_shared<Nf4Weight>();
  out->shape.assign(w.sizes().begin(), w.sizes().end());
  out->numel = q.numel;
  out->block = q.block;
  out->absmax_block = q.absmax_block;
  const auto device = w.device();
  out->codes = BytesOn(q.codes, torch::kUInt8, device);
  out->absmax_codes = BytesOn(q.absmax_codes, torch::kUInt8, device);
  out->absmax_scales = BytesOn(q.absmax_scales, torch::kFloat, device);
  out->absmax_offset = q.absmax_offset;
  out->code4 = TableOn(Nf4CodeBook(), device);
  out->code8 = TableOn(DynamicCode8(), device);
  return out;
}

// absmax'_b = code8[c_b] * scale_g + offset; w'_i = nf4[k_i] * absmax'_b, in
// fp32 and in this order (as weights/nf4.cpp's DequantizeNf4), then cast.
torch::Tensor DequantizeNf4Weight(const Nf4Weight& q, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  const int64_t blocks = q.absmax_codes.numel();
  auto high = torch::bitwise_right_shift(q.codes, 4), low = torch::bitwise_and(q.codes, 15);
  auto index = torch::stack({high, low}, 1).reshape({-1}).narrow(0, 0, q.numel).to(torch::kLong);
  auto scales = q.absmax_scales.repeat_interleave(q.absmax_block).narrow(0, 0, blocks);
  auto absmax =
      q.code8.index_select(0, q.absmax_codes.to(torch::kLong)).mul(scales).add(static_cast<float>(q.absmax_offset));
  auto per_element = absmax.repeat_interleave(q.block).narrow(0, 0, q.numel);
  return q.code4.index_select(0, index).mul(per_element).to(dtype).view(q.shape);
}

void MoveNf4Weight(Nf4Weight& q, const torch::Device& device) {
  for (torch::Tensor* t : {&q.codes, &q.absmax_codes, &q.absmax_scales, &q.code4, &q.code8}) *t = t->to(device);
}

torch::Tensor Nf4Linear(const torch::Tensor& x, const std::shared_ptr<Nf4Weight>& q) {
  DFAR_CHECK(q != nullptr, "Nf4Linear without a quantised weight");
  return Nf4LinearFn::apply(x, reinterpret_cast<int64_t>(q.get()));
}

}  // namespace dfar
