// The communicator dtype of a tensor dtype (internal to src/train): what
// GradientSync reduces and ParameterGather gathers in. Throws naming the
// dtype and `what` for one the communicators do not carry.
#pragma once

#include <torch/torch.h>

#include "dfar/comm/communicator.h"
#include "dfar/core/error.h"

namespace dfar {

inline DType CommDTypeOf(torch::ScalarType t, const char* what) {
  switch (t) {
    case torch::kFloat:
      return DType::kFloat32;
    case torch::kDouble:
      return DType::kFloat64;
    case torch::kBFloat16:
      return DType::kBFloat16;
    case torch::kHalf:
      return DType::kFloat16;
    default:
      break;
  }
  DFAR_THROW(what, " of dtype ", t, " cannot be communicated");
}

}  // namespace dfar
