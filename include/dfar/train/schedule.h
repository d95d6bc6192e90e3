// Learning-rate schedules, with Hugging Face's step semantics: the rate used
// by optimizer step s (0-based) is lr * factor(s), so the very first step of a
// warmup runs at 0 (as transformers' get_*_schedule_with_warmup do).
#pragma once

#include <cstdint>
#include <string>

namespace dfar {

struct LrSchedule {
  std::string kind = "constant";  // constant | linear | cosine (after warmup).
  double base_lr = 2e-4;
  int64_t total_steps = 1;
  int64_t warmup_steps = 0;  // ceil(warmup_ratio * total_steps).

  double At(int64_t step) const;
};

LrSchedule MakeSchedule(const std::string& kind, double base_lr, int64_t total_steps, double warmup_ratio);

}  // namespace dfar
