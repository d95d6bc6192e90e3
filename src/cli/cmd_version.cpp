// `dfar version`: what this binary is and what it was built with.
#include <spdlog/version.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>

#include "commands.h"
#include "dfar/build_info.h"

namespace dfar::cli {

void RegisterVersionCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "print the version and build facts");
  cmd->callback([] {
    std::printf("dfar %s (%s, %s)\n", DFAR_VERSION, DFAR_BUILD_TYPE, DFAR_CXX_COMPILER);
    std::printf("spdlog %d.%d.%d\n", SPDLOG_VER_MAJOR, SPDLOG_VER_MINOR, SPDLOG_VER_PATCH);
    std::printf("nccl backend: %s\n", DFAR_NCCL_ENABLED_TEXT);
  });
}

}  // namespace dfar::cli
