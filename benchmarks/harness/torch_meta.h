// Metadata that only torch-linked benchmarks can fill in.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

#include "harness.h"

namespace dfar::bench {

inline void AddTorchMeta(Report& report) {
  report.Meta("libtorch", TORCH_VERSION);
  report.Meta("torch_threads", std::to_string(at::get_num_threads()));
}

}  // namespace dfar::bench
