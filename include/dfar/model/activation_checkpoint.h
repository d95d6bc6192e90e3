// Activation checkpointing as a custom autograd function.
//
// CheckpointedCall(fn, x) returns fn(x) but keeps only x for backward: the
// forward runs without building a graph, and backward runs fn again with grad
// enabled, then backpropagates through the recomputed graph. Parameter
// gradients accumulate into .grad as usual (and their hooks fire), so
// gradients are identical with checkpointing on and off; the price is one
// extra forward of fn. The CPU RNG state, and the CUDA one of x's device,
// are saved at forward and replayed for the recompute (then restored), so
// dropout inside fn draws the same masks twice. fn is kept alive until
// backward.
#pragma once

#include <torch/torch.h>

#include <functional>

namespace dfar {

using CheckpointFn = std::function<torch::Tensor(const torch::Tensor&)>;

torch::Tensor CheckpointedCall(CheckpointFn fn, const torch::Tensor& x);

}  // namespace dfar
