// One whole evaluation: placement, data, the evaluator, the report.

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "dfar/core/error.h"
#include "dfar/core/logging.h"
#include "dfar/data/dataset.h"
#include "dfar/eval/evaluator.h"
#include "dfar/runtime/thread_policy.h"

namespace dfar {
namespace {

bool HasUnmergedLora(Decoder& decoder) {
  for (const auto& m : decoder->modules(false)) {
    const auto* p = dynamic_cast<const ProjImpl*>(m.get());
    if (p != nullptr && p->has_lora() && !p->merged) return true;
  }
  return false;
}

std::vector<Example> LoadTestExamples(const Config& config) {
  DFAR_CHECK(!config.data.test.empty(), "data.test is empty: name the evaluation CSV (--data or data.test=...)");
  // data.limit is for training rows: the test file is read whole, then cut by eval.limit.
  DataConfig spec = config.data;
  spec.limit = 0;
  const std::vector<Example> all = LoadExamples(config.data.test, spec);
  std::vector<Example> examples;
  for (size_t i : SubsetRows(all.size(), config.eval.limit, config.eval.subset)) examples.push_back(all[i]);
  DFAR_CHECK(!examples.empty(), config.data.test, ": no examples to evaluate");
  return examples;
}

ReportInfo MakeInfo(const Config& config, const std::string& model_path, const std::string& checkpoint,
                    const Communicator& comm) {
  ReportInfo info;
  info.model = model_path;
  info.checkpoint = checkpoint;
  info.objective = ObjectiveName(ParseObjective(config.prompt.objective));
  info.template_name = config.prompt.template_name;
  info.data_file = config.data.test;
  info.mode = config.eval.mode;
  info.world_size = comm.size();
  info.backend = comm.backend();
  info.batch_size = config.eval.batch_size;
  info.max_new_tokens = config.eval.max_new_tokens;
  info.limit = config.eval.limit;
  info.subset = config.eval.subset;
  return info;
}

}  // namespace

std::string EvalOutDir(const Config& config) {
  if (!config.eval.out_dir.empty()) return config.eval.out_dir;
  return (std::filesystem::path(config.run.dir) / "eval").string();
}

void PlaceForEval(PretrainedModel& model, const RunSetup& setup) {
  const torch::Device& device = setup.device();
  // Merged adapters cost nothing per token; merge before any cast to bf16.
  if (HasUnmergedLora(model.decoder)) model.decoder->MergeLora();
  model.decoder->to(device, setup.dtype());
  // OMP_NUM_THREADS wins; otherwise the node's cores are split among its ranks.
  const World& world = setup.world();
  const bool from_env = std::getenv("OMP_NUM_THREADS") != nullptr;
  const int threads = from_env ? world.threads : std::max(1, world.threads / std::max(1, world.local_size));
  if (device.is_cpu()) SetCpuThreads(threads);
  LogInfo("eval: {} on {} in {} ({} threads)", model.source, device.str(), setup.placement().dtype_name,
          device.is_cpu() ? threads : 0);
}

EvalReport RunEvaluation(PretrainedModel& model, const Config& config, const std::string& model_path,
                         const std::string& checkpoint, Communicator& comm) {
  const ReportInfo info = MakeInfo(config, model_path, checkpoint, comm);
  const std::vector<Example> examples = LoadTestExamples(config);
  // Reasons are judged for objective L+R (the pre-trained row is prompted
  // as L+R); L is never asked for one.
  const std::unique_ptr<ReasonJudge> judge = ReasonJudge::Make(config, ReasonsAreRead(config, examples), comm);
  GatheredResults gathered = Evaluate(model, config, examples, comm, judge.get());
  ReportOptions options;
  options.bootstrap_resamples = config.eval.bootstrap_resamples;
  options.seed = config.run.seed;
  options.mar_k = config.eval.mar_k;
  options.encoder = judge ? config.eval.encoder : "";
  EvalReport report = BuildReport(info, gathered.results, gathered.ranks, options);
  if (comm.rank() == 0) {
    const std::string out_dir = EvalOutDir(config);
    WriteEvalOutputs(out_dir, report, gathered.results);
    report.source = (std::filesystem::path(out_dir) / "eval_report.json").string();
  }
  return report;
}

}  // namespace dfar
