#include "dfar/model/activation_checkpoint.h"

#include "dfar/core/error.h"

namespace dfar {
namespace {

// Holds the function across forward and backward inside the autograd context.
struct FnHolder : torch::CustomClassHolder {
  explicit FnHolder(CheckpointFn f) : fn(std::move(f)) {}
  CheckpointFn fn;
};

class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::IValue holder) {
    ctx->saved_data["fn"] = holder;
    ctx->save_for_backward({x});
    torch::NoGradGuard no_grad;
    auto* h = static_cast<FnHolder*>(holder.toCapsule().get());
    return h->fn(x);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    auto holder = ctx->saved_data["fn"].toCapsule();
    torch::Tensor out;
    {
      torch::AutoGradMode enable(true);
      out = static_cast<FnHolder*>(holder.get())->fn(x);
    }
    torch::autograd::backward({out}, {grads[0]});
    return {x.grad(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor CheckpointedCall(CheckpointFn fn, const torch::Tensor& x) {
  auto holder = torch::IValue::make_capsule(c10::make_intrusive<FnHolder>(std::move(fn)));
  return CheckpointFunction::apply(x, holder);
}

}  // namespace dfar
