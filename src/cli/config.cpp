// `dfar config show|keys`.
#include <cstdio>
#include <memory>

#include "commands.h"

namespace dfar::cli {

void RegisterConfigCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("config", "show the resolved config, or every key of the schema");
  cmd->require_subcommand(1);
  auto flags = std::make_shared<ConfigFlags>();

  auto* show = cmd->add_subcommand("show", "print CONFIG with overrides applied, every key resolved");
  AddConfigFlags(*show, *flags, /*config_positional=*/true);
  show->callback([flags] { std::printf("%s", ConfigToYaml(LoadConfigFromFlags(*flags)).c_str()); });

  auto* keys = cmd->add_subcommand("keys", "list every config key with its type, default and meaning");
  keys->callback([] { std::printf("%s", ConfigKeysHelp().c_str()); });
}

}  // namespace dfar::cli
