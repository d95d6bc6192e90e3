// Faults that tests inject into a running job, through one process-wide
// seam (leveldb's Env idea). File-system faults go through FileSystem
// (dfar/core/file_util.h); this one covers what is not a file operation: a
// training step whose loss turns non-finite, as a diverging run would.
// Production code never installs an injector; the default injects nothing.
// Thread-safety: install a ScopedFaults only while no job runs.
#pragma once

#include <cstdint>

namespace dfar {

class FaultInjector {
 public:
  virtual ~FaultInjector() = default;
  // True: the loss of this 0-based optimizer step becomes NaN on this rank.
  virtual bool PoisonStep(int64_t /*step*/) { return false; }
};

// The injector the trainer consults.
FaultInjector& CurrentFaults();

// Makes `faults` current until destruction; restores the previous one.
class ScopedFaults {
 public:
  explicit ScopedFaults(FaultInjector* faults);
  ~ScopedFaults();
  ScopedFaults(const ScopedFaults&) = delete;
  ScopedFaults& operator=(const ScopedFaults&) = delete;

 private:
  FaultInjector* previous_;
};

}  // namespace dfar
