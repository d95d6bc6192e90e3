// `dfar version`: what this binary is, what it was built with, and what it
// finds at run time (the libtorch actually loaded, CUDA driver and devices).
#include <ATen/Version.h>
#include <torch/version.h>

#include <cstdio>
#include <string>

#include "commands.h"
#include "dfar/build_info.h"
#include "dfar/core/logging.h"
#if defined(DFAR_WITH_NCCL)
#include "dfar/comm/nccl_communicator.h"
#endif

namespace dfar::cli {
namespace {

// The version compiled into the libtorch that was loaded (not the headers'):
// a LD_LIBRARY_PATH that picks another install shows up here.
std::string LoadedTorchVersion() {
  const std::string config = at::show_config();
  const std::string key = "TORCH_VERSION=";
  const auto at = config.find(key);
  if (at == std::string::npos) return "unknown";
  return config.substr(at + key.size(), config.find_first_of(", \n", at + key.size()) - at - key.size());
}

void PrintVersion() {
  std::printf("dfar %s (%s, %s)\n", DFAR_VERSION, DFAR_BUILD_TYPE, DFAR_CXX_COMPILER);
  std::printf("logging %s\n", LoggingBackendVersion().c_str());
  const std::string loaded = LoadedTorchVersion();
  std::printf("libtorch %s (headers %s)%s\n", loaded.c_str(), TORCH_VERSION,
              loaded.rfind(TORCH_VERSION, 0) == 0 ? "" : "  MISMATCH: another libtorch was loaded");
  std::printf("libtorch cuda: %s\n", DFAR_TORCH_CUDA_TEXT);
  std::printf("nccl backend: %s\n", DFAR_NCCL_ENABLED_TEXT);
#if defined(DFAR_WITH_NCCL)
  for (const std::string& line : DescribeCudaRuntime()) std::printf("%s\n", line.c_str());
#endif
}

}  // namespace

void RegisterVersionCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "print the version, build facts, and the CUDA devices found");
  cmd->callback(PrintVersion);
}

}  // namespace dfar::cli
