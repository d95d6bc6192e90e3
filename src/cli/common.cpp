#include "commands.h"

namespace dfar::cli {

void AddConfigFlags(CLI::App& cmd, ConfigFlags& flags, bool config_positional) {
  if (config_positional) {
    cmd.add_option("config", flags.path, "YAML config file")->required();
  } else {
    cmd.add_option("--config,-c", flags.path, "YAML config file (defaults apply without one)");
  }
  cmd.add_option("overrides", flags.overrides, "config overrides, section.key=value (keys below)");
  cmd.footer("\nConfig keys (override with section.key=value):\n" + ConfigKeysHelp());
}

Config LoadConfigFromFlags(const ConfigFlags& flags) {
  return LoadConfig(flags.path, flags.overrides);
}

}  // namespace dfar::cli
