// `dfar config show|keys`.
#include <cstdio>
#include <memory>

#include "commands.h"
#include "dfar/runtime/placement.h"

namespace dfar::cli {

void RegisterConfigCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("config", "show the resolved config, or every key of the schema");
  cmd->require_subcommand(1);
  auto flags = std::make_shared<ConfigFlags>();

  auto* show = cmd->add_subcommand("show", "print CONFIG with overrides applied, every key resolved");
  AddConfigFlags(*show, *flags, /*config_positional=*/true);
  show->callback([flags] { std::printf("%s", ConfigToYaml(LoadConfigFromFlags(*flags)).c_str()); });

  // The one device rule, for launchers' dry runs.
  auto device = std::make_shared<std::string>("auto");
  auto gpus = std::make_shared<int>(0);
  auto locals = std::make_shared<std::vector<int>>();
  auto* dev = cmd->add_subcommand("device", "the device each local rank takes (model.device rule), one per line");
  dev->add_option("--device", *device, "model.device: auto, cpu or cuda")->capture_default_str();
  dev->add_option("--gpus", *gpus, "CUDA devices a rank sees")->required();
  dev->add_option("local_ranks", *locals, "local ranks")->required();
  dev->callback([device, gpus, locals] {
    for (int local : *locals) std::printf("%s\n", PickDevice(*device, local, *gpus).str().c_str());
  });

  auto* keys = cmd->add_subcommand("keys", "list every config key with its type, default and meaning");
  keys->callback([] { std::printf("%s", ConfigKeysHelp().c_str()); });
}

}  // namespace dfar::cli
