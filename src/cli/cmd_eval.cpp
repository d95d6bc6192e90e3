// `dfar eval`, `dfar eval compare`, `dfar eval mar`.
#include <cstdio>
#include <memory>

#include "commands.h"
#include "dfar/comm/communicator.h"
#include "dfar/core/error.h"
#include "dfar/core/logging.h"
#include "dfar/core/torch_compat.h"
#include "dfar/eval/annotations.h"
#include "dfar/eval/evaluator.h"
#include "dfar/eval/report.h"
#include "dfar/model/pretrained.h"
#include "dfar/runtime/thread_policy.h"

#if __has_include("dfar/train/trained_model.h")
#include "dfar/train/trained_model.h"
#define DFAR_HAVE_TRAINED_MODEL 1
#endif

namespace dfar::cli {
namespace {

struct EvalFlags {
  ConfigFlags config;
  std::string model;
  std::string checkpoint;
  std::string data;
  std::string objective;
  std::string out;
  std::vector<std::string> reports;
  std::vector<std::string> compare_annotations;
  std::string annotations;
};

// The fine-tuned model of a checkpoint. Its run's config decides what the
// model is and how it was prompted (model, lora, prompt, tokenizer); the
// user's config and overrides keep deciding data and eval settings.
PretrainedModel LoadCheckpoint(const std::string& dir, Config* config, const ConfigFlags& flags) {
#ifdef DFAR_HAVE_TRAINED_MODEL
  Config trained;
  PretrainedModel model = LoadTrainedModel(dir, &trained);
  config->model = trained.model;
  config->lora = trained.lora;
  config->prompt = trained.prompt;
  config->tokenizer = trained.tokenizer;
  for (const std::string& o : flags.overrides) ApplyOverride(*config, o);
  return model;
#else
  (void)config;
  (void)flags;
  DFAR_THROW("--checkpoint ", dir, ": this build has no trainer (dfar/train/trained_model.h); use --model");
#endif
}

void ApplyFlags(const EvalFlags& f, Config* config) {
  if (!f.data.empty()) config->data.test = f.data;
  if (!f.objective.empty()) config->prompt.objective = f.objective;
  if (!f.out.empty()) config->eval.out_dir = f.out;
  if (!f.model.empty()) config->model.path = f.model;
  config->Validate();
}

void RunEval(const EvalFlags& f) {
  DFAR_CHECK(f.model.empty() || f.checkpoint.empty(), "give --model or --checkpoint, not both");
  Config config = LoadConfigFromFlags(f.config);
  ApplyWaitPolicy(config.model);  // May re-execute dfar: before MPI starts.
  auto comm = MakeHostCommunicator();
  PretrainedModel model;
  if (!f.checkpoint.empty()) model = LoadCheckpoint(f.checkpoint, &config, f.config);
  ApplyFlags(f, &config);
  InitLogging({comm->rank(), config.run.log_level, EvalOutDir(config), config.run.log_all_ranks_to_console});
  RunSetup setup(config.model, *comm, config.dist.collective_timeout_s);
  setup.LogTopology();
  if (f.checkpoint.empty())
    model = LoadBaseModel(config.model, config.run.seed,
                          {torch::TensorOptions().device(setup.device()).dtype(setup.dtype()), false});
  PlaceForEval(model, setup);
  const EvalReport report = RunEvaluation(model, config, config.model.path, f.checkpoint, *comm);
  if (comm->rank() != 0) return;
  std::printf("%swrote %s (and eval_report.md, predictions.jsonl, annotations.csv)\n", ReportSummary(report).c_str(),
              report.source.c_str());
  std::fflush(stdout);
}

void RunCompare(const EvalFlags& f) {
  std::vector<EvalReport> reports;
  for (const std::string& path : f.reports) reports.push_back(ReadReport(path));
  std::vector<double> human;
  for (const std::string& path : f.compare_annotations)
    human.push_back(path.empty() || path == "-" ? -1.0 : ComputeHumanMar(ReadAnnotations(path)).mar);
  DFAR_CHECK(human.size() <= reports.size(), "eval compare: ", human.size(), " annotation files for ", reports.size(),
             " reports (give one per report, in the same order; '-' for none)");
  std::printf("%s", CompareTable(reports, human).c_str());
}

void RunMar(const EvalFlags& f) {
  const HumanMar m = ComputeHumanMar(ReadAnnotations(f.annotations));
  std::printf("annotations: %s\nrows: %lld  aligned: %lld  misaligned: %lld\nhuman MAR: %.1f%%\n",
              f.annotations.c_str(), static_cast<long long>(m.n), static_cast<long long>(m.aligned),
              static_cast<long long>(m.misaligned), 100.0 * m.mar);
}

}  // namespace

void RegisterEvalCommand(CLI::App& app) {
  auto flags = std::make_shared<EvalFlags>();
  auto* cmd = app.add_subcommand("eval", "evaluate a model on a test CSV (distributed under mpirun)");
  cmd->add_option("--model,-m", flags->model, "a .gguf file or HF directory (the pre-trained row)");
  cmd->add_option("--checkpoint", flags->checkpoint, "a training checkpoint directory (the L or L+R row)");
  cmd->add_option("--data,-d", flags->data, "test CSV (default: data.test)");
  cmd->add_option("--objective", flags->objective, "l or lr: which row (L or L+R) the report is")
      ->check(CLI::IsMember({"l", "lr"}));
  cmd->add_option("--out,-o", flags->out, "report directory (default: eval.out_dir, else <run.dir>/eval)");
  AddConfigFlags(*cmd, flags->config);
  cmd->require_subcommand(0, 1);

  auto* compare = cmd->add_subcommand("compare", "one table from several eval reports (paper style)");
  compare->add_option("reports", flags->reports, "eval_report.json files or directories holding one")
      ->required()
      ->check(CLI::ExistingPath);
  compare->add_option("--annotations,-a", flags->compare_annotations,
                      "filled annotations.csv per report, in report order ('-' for none): human MAR beside the "
                      "automatic one");
  compare->callback([flags] { RunCompare(*flags); });

  auto* mar = cmd->add_subcommand("mar", "human MAR from a filled-in annotations.csv");
  mar->add_option("--annotations,-a", flags->annotations, "annotations.csv with the 'aligned' column filled")
      ->required();
  mar->callback([flags] { RunMar(*flags); });

  cmd->callback([cmd, flags] {
    if (cmd->get_subcommands().empty()) RunEval(*flags);
  });
}

}  // namespace dfar::cli
