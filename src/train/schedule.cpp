#include "dfar/train/schedule.h"

#include <algorithm>
#include <cmath>

#include "dfar/core/error.h"

namespace dfar {

double LrSchedule::At(int64_t step) const {
  if (step < warmup_steps) return base_lr * static_cast<double>(step) / std::max<int64_t>(1, warmup_steps);
  const double decay_steps = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  const double progress = static_cast<double>(step - warmup_steps) / decay_steps;
  if (kind == "constant") return base_lr;
  if (kind == "linear") return base_lr * std::max(0.0, 1.0 - progress);
  if (kind == "cosine") return base_lr * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
  DFAR_THROW("unknown learning-rate schedule '", kind, "'");
}

LrSchedule MakeSchedule(const std::string& kind, double base_lr, int64_t total_steps, double warmup_ratio) {
  DFAR_CHECK(total_steps > 0, "a schedule needs at least one step, got ", total_steps);
  LrSchedule s;
  s.kind = kind;
  s.base_lr = base_lr;
  s.total_steps = total_steps;
  s.warmup_steps = static_cast<int64_t>(std::ceil(warmup_ratio * static_cast<double>(total_steps)));
  s.At(0);  // Validates the kind.
  return s;
}

}  // namespace dfar
