#include "dfar/runtime/run_setup.h"

#include <cstdio>

#include "dfar/comm/watchdog.h"
#include "dfar/core/error.h"
#include "dfar/core/logging.h"
#include "dfar/core/torch_compat.h"
#include "dfar/runtime/thread_policy.h"
#if defined(DFAR_WITH_NCCL)
#include "dfar/comm/nccl_communicator.h"
#endif

namespace dfar {
namespace {

// CUDA parameters are reduced over NCCL (its unique id travels over the host
// communicator); scalars, metadata and checkpoints stay on the host one.
std::unique_ptr<Communicator> OpenDeviceCommunicator(const torch::Device& device, Communicator& host,
                                                     double timeout_s) {
  if (!device.is_cuda()) return nullptr;
#if defined(DFAR_WITH_NCCL)
  auto comm = MakeNcclCommunicator(host, device.index(), nullptr, timeout_s);
  LogInfo("tensors reduce over NCCL on {} ({} ranks)", device.str(), host.size());
  return comm;
#else
  (void)timeout_s;
  DFAR_CHECK(host.size() == 1, "model.device=cuda with ", host.size(),
             " ranks needs the NCCL backend, and this build has none (rebuild where CUDA and NCCL are found)");
  return nullptr;
#endif
}

}  // namespace

RunSetup::RunSetup(const ModelSection& model, Communicator& host, double collective_timeout_s)
    : host_(host), world_(DiscoverWorld()) {
  world_.rank = host.rank();
  world_.size = host.size();
  placement_ = ResolvePlacement(model.device, model.dtype, world_.local_rank, host);
  world_.device = placement_.device.str();
  if (!placement_.warning.empty() && host.rank() == 0) LogWarn("{}", placement_.warning);
  device_comm_ = OpenDeviceCommunicator(placement_.device, host, collective_timeout_s);
  if (placement_.device.is_cuda()) compat::SetAllowTf32(model.allow_tf32);
  InstallStopSignalHandlers();
}

RunSetup::~RunSetup() = default;

void RunSetup::LogTopology() const {
  const std::string mine = world_.TopologyLine() + " dtype=" + placement_.dtype_name;
  LogInfo("topology: {}", mine);
  LogInfo("threads wait: {}", WaitPolicyLine());
  const auto lines = host_.AllGatherBytes(mine);
  if (host_.rank() != 0) return;
  for (const auto& line : lines) std::fprintf(stderr, "dfar: %s\n", line.c_str());
  std::fprintf(stderr, "dfar: compute dtype %s: %s\n", placement_.dtype_name.c_str(), placement_.reason.c_str());
  if (placement_.device.is_cpu()) std::fprintf(stderr, "dfar: threads wait: %s\n", WaitPolicyLine().c_str());
}

std::string RunSetup::ResolvedComment() const {
  return "# resolved by this run (not config keys):\n#   device: " + placement_.device.str() +
         "\n#   dtype: " + placement_.dtype_name + "\n#   dtype_reason: " + placement_.reason + "\n";
}

}  // namespace dfar
