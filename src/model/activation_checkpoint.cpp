#include "dfar/model/activation_checkpoint.h"

#include "dfar/core/error.h"
#include "dfar/core/torch_compat.h"

namespace dfar {
namespace {

// The RNG streams a block's dropout can draw from: the CPU generator, and
// the input's CUDA device's generator when it runs there.
struct RngStates {
  at::Tensor cpu, device;
  c10::Device where{c10::kCPU};

  static RngStates Capture(const c10::Device& where) {
    RngStates s;
    s.where = where;
    s.cpu = compat::RngState(c10::Device(c10::kCPU));
    if (!where.is_cpu()) s.device = compat::RngState(where);
    return s;
  }
  void Restore() const {
    compat::SetRngState(c10::Device(c10::kCPU), cpu);
    if (device.defined()) compat::SetRngState(where, device);
  }
};

// Holds the function across forward and backward inside the autograd context,
// with the RNG states the forward started from (torch's preserve_rng_state):
// the recompute replays the same dropout masks, so the gradients belong to
// the loss that forward computed.
struct FnHolder : torch::CustomClassHolder {
  explicit FnHolder(CheckpointFn f) : fn(std::move(f)) {}
  CheckpointFn fn;
  RngStates rng;
};

class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::IValue holder) {
    ctx->saved_data["fn"] = holder;
    ctx->save_for_backward({x});
    torch::NoGradGuard no_grad;
    auto* h = static_cast<FnHolder*>(holder.toCapsule().get());
    h->rng = RngStates::Capture(x.device());
    return h->fn(x);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    auto holder = ctx->saved_data["fn"].toCapsule();
    auto* h = static_cast<FnHolder*>(holder.get());
    torch::Tensor out;
    {
      // Replay the forward's RNG, then hand back the stream as it was, so
      // what runs after backward draws what it would have drawn.
      const RngStates now = RngStates::Capture(h->rng.where);
      h->rng.Restore();
      torch::AutoGradMode enable(true);
      out = h->fn(x);
      now.Restore();
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
