#include "dfar/runtime/thread_policy.h"

#include <dlfcn.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dfar/core/logging.h"
#include "dfar/core/world.h"
#include "dfar/runtime/placement.h"

namespace dfar {
namespace {

constexpr const char* kPolicyVar = "OMP_WAIT_POLICY";
constexpr const char* kReasonVar = "DFAR_WAIT_POLICY_REASON";  // Set with the policy by dfar; absent: the user's.
constexpr const char* kSwitchVar = "DFAR_THREAD_POLICY";       // "off": never choose.

std::vector<std::string>& CommandLine() {
  static std::vector<std::string> args;
  return args;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// The dtype RunSetup will pick on this rank, without the ranks' agreement
// (which needs MPI): the same rule on this rank's own probe.
Placement LocalPlacement(const ModelSection& model) {
  const World w = DiscoverWorld();
  const bool may_cuda = model.device == "cuda" || model.device == "auto";
  const int gpus = may_cuda && torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  const torch::Device device = PickDevice(model.device, w.local_rank, gpus);
  Bf16Probe probe;
  if (device.is_cpu() && model.dtype == "auto") probe = ProbeCpuBf16();
  return DecideDtype(model.dtype, device, DetectCpuFeatures(), probe);
}

// Returns only when execv failed: then the run goes on under libgomp's default.
void Reexecute() {
  std::vector<char*> argv;
  for (auto& a : CommandLine()) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The binary's own path, not /proc/self/exe: execv names the process after
  // its file, and ps, pgrep and SLURM's job tools should still see "dfar".
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) self[n] = '\0';
  ::execv(n > 0 ? self : "/proc/self/exe", argv.data());
  LogWarn("could not re-execute with {}={} ({}); continuing with libgomp's default", kPolicyVar, Env(kPolicyVar),
          std::strerror(errno));
  ::unsetenv(kPolicyVar);
  ::unsetenv(kReasonVar);
}

}  // namespace

// Debian's libtorch links the generic libblas.so.3, which the alternatives
// system points at OpenBLAS (libopenblas0-pthread): what is loaded decides,
// so look for OpenBLAS's own entry point first.
CpuGemmLibrary DetectCpuGemmLibrary() {
  if (::dlsym(RTLD_DEFAULT, "openblas_get_config") != nullptr) return CpuGemmLibrary::kOpenBlas;
  if (at::hasMKL()) return CpuGemmLibrary::kMkl;
  return CpuGemmLibrary::kOther;
}

const char* CpuGemmLibraryName(CpuGemmLibrary lib) {
  switch (lib) {
    case CpuGemmLibrary::kOpenBlas:
      return "OpenBLAS";
    case CpuGemmLibrary::kMkl:
      return "MKL";
    default:
      return "another BLAS";
  }
}

WaitPolicyChoice ChooseWaitPolicy(const std::string& dtype_name, bool on_cuda, CpuGemmLibrary fp32_gemm) {
  if (on_cuda) return {"", "CUDA rank: host threads only feed the GPU"};
  if (dtype_name == "fp32" && fp32_gemm == CpuGemmLibrary::kOpenBlas)
    return {"PASSIVE", "fp32 GEMMs run on OpenBLAS's own threads; spinning OpenMP workers would take their cores"};
  if (dtype_name == "fp32")
    return {"", std::string("fp32 GEMMs run on ") + CpuGemmLibraryName(fp32_gemm) +
                    " inside OpenMP, where spinning workers keep regions cheap"};
  return {"", "bf16 GEMMs run on oneDNN inside OpenMP, where spinning workers keep regions cheap"};
}

void SetCpuThreads(int n) {
  torch::set_num_threads(n);
  // Resolved at run time: only the OpenBLAS build of libtorch loads it.
  using SetThreads = void (*)(int);
  static const auto openblas = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (openblas != nullptr) openblas(n);
}

void RememberCommandLine(int argc, char** argv) {
  CommandLine().assign(argv, argv + argc);
}

void ApplyWaitPolicy(const ModelSection& model) {
  if (!Env(kPolicyVar).empty() || Env(kSwitchVar) == "off" || CommandLine().empty()) return;
  const Placement p = LocalPlacement(model);
  const WaitPolicyChoice c = ChooseWaitPolicy(p.dtype_name, p.device.is_cuda(), DetectCpuGemmLibrary());
  if (c.value.empty()) {
    ::setenv(kReasonVar, c.reason.c_str(), 1);  // For WaitPolicyLine: left unset, and why.
    return;
  }
  ::setenv(kPolicyVar, c.value.c_str(), 1);
  ::setenv(kReasonVar, c.reason.c_str(), 1);
  Reexecute();
}

std::string WaitPolicyLine() {
  const std::string value = Env(kPolicyVar), reason = Env(kReasonVar);
  if (value.empty())
    return std::string(kPolicyVar) + " unset, libgomp's default" + (reason.empty() ? "" : " (dfar: " + reason + ")");
  if (reason.empty()) return std::string(kPolicyVar) + "=" + value + " (yours)";
  return std::string(kPolicyVar) + "=" + value + " (dfar: " + reason + ")";
}

}  // namespace dfar
