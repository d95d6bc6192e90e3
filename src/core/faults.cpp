#include "dfar/core/faults.h"

#include <atomic>

namespace dfar {
namespace {

std::atomic<FaultInjector*> g_faults{nullptr};

}  // namespace

FaultInjector& CurrentFaults() {
  static FaultInjector none;
  FaultInjector* f = g_faults.load();
  return f != nullptr ? *f : none;
}

ScopedFaults::ScopedFaults(FaultInjector* faults) : previous_(g_faults.exchange(faults)) {}
ScopedFaults::~ScopedFaults() {
  g_faults.store(previous_);
}

}  // namespace dfar
