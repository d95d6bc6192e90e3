// Registration of `dfar` subcommands. Each src/cli/<name>.cpp parses its own
// flags and calls the library; no logic lives in the CLI.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "dfar/core/config.h"

namespace dfar::cli {

void RegisterDataCommand(CLI::App& app);
void RegisterTokenizerCommand(CLI::App& app);
void RegisterConfigCommand(CLI::App& app);
void RegisterVersionCommand(CLI::App& app);
void RegisterGenerateCommand(CLI::App& app);
void RegisterEvalCommand(CLI::App& app);
void RegisterTrainCommand(CLI::App& app);
void RegisterCkptCommand(CLI::App& app);

// Flags every config-driven command shares: --config FILE and trailing
// `section.key=value` overrides. The help footer lists the keys from the
// config schema, so documented and parsed keys cannot drift.
struct ConfigFlags {
  std::string path;
  std::vector<std::string> overrides;
};
void AddConfigFlags(CLI::App& cmd, ConfigFlags& flags, bool config_positional = false);
Config LoadConfigFromFlags(const ConfigFlags& flags);

}  // namespace dfar::cli
