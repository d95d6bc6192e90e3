// `dfar train`: fine-tune with objective L or L+R under mpirun (or alone).

#include <cstdio>
#include <memory>

#include "commands.h"
#include "dfar/comm/communicator.h"
#include "dfar/core/logging.h"
#include "dfar/runtime/thread_policy.h"
#include "dfar/train/trainer.h"

namespace dfar::cli {
namespace {

struct TrainFlags {
  ConfigFlags config;
  TrainOptions options;
};

void RunTrain(const TrainFlags& f) {
  const Config config = LoadConfigFromFlags(f.config);
  ApplyWaitPolicy(config.model);  // May re-execute dfar: before MPI starts.
  auto comm = MakeHostCommunicator();
  const TrainSummary s = RunTraining(config, f.options, *comm);
  LogInfo("done: {} steps in {:.1f}s, final loss {:.4f}, checkpoint {}", s.steps, s.seconds, s.final_loss,
          s.last_checkpoint);
}

}  // namespace

void RegisterTrainCommand(CLI::App& app) {
  auto flags = std::make_shared<TrainFlags>();
  auto* cmd = app.add_subcommand("train", "fine-tune a model with objective L or L+R (data parallel over MPI ranks)");
  cmd->add_flag("--resume", flags->options.resume, "continue from <run.dir>/checkpoints/latest");
  cmd->add_flag("--overwrite", flags->options.overwrite, "replace an existing run dir");
  AddConfigFlags(*cmd, flags->config);
  cmd->callback([flags] { RunTrain(*flags); });
}

}  // namespace dfar::cli
