// What every command that runs a model needs, built once: the world, the
// placement (device and dtype, dfar/runtime/placement.h), the communicator
// that reduces tensors (NCCL for CUDA placements, else the host one), and
// the stop-signal handler that feeds both the trainer's stop flag and the
// watchdog's stall diagnosis. `dfar train`, `dfar eval`, `dfar generate` and
// the step benchmark build one.
//
// Failure: throws dfar::Error for a bad model.device / model.dtype, a CUDA
// placement without a device, or CUDA with several ranks in a build without
// NCCL.
// Thread-safety: construct on the main thread of every rank (it is
// collective: ranks agree on the dtype through the host communicator).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "dfar/comm/communicator.h"
#include "dfar/core/config.h"
#include "dfar/core/world.h"
#include "dfar/runtime/placement.h"

namespace dfar {

class RunSetup {
 public:
  // `host` is not owned and must outlive this object. `collective_timeout_s`
  // (dist.collective_timeout_s) is the NCCL communicator's deadline per
  // collective and for its start-up.
  RunSetup(const ModelSection& model, Communicator& host,
           double collective_timeout_s = DistConfig{}.collective_timeout_s);
  ~RunSetup();

  const World& world() const { return world_; }
  const Placement& placement() const { return placement_; }
  const torch::Device& device() const { return placement_.device; }
  torch::ScalarType dtype() const { return placement_.dtype; }
  Communicator& host() { return host_; }
  // Where tensors are reduced: NCCL for CUDA parameters, else the host one.
  Communicator& tensors() { return device_comm_ ? *device_comm_ : host_; }

  // Prints every rank's topology line (rank 0, stderr) and the dtype line;
  // each rank's own line goes to its log. Collective.
  void LogTopology() const;
  // "# resolved ..." comment lines for the run dir's config.yaml.
  std::string ResolvedComment() const;

 private:
  Communicator& host_;
  World world_;
  Placement placement_;
  std::unique_ptr<Communicator> device_comm_;
};

}  // namespace dfar
