#include "dfar/eval/report.h"

#include <algorithm>
#include <filesystem>

#include "dfar/core/error.h"
#include "dfar/data/csv.h"

namespace dfar {
namespace {

constexpr const char* kReportFormat = "dfar-eval-report";
constexpr int kReportVersion = 1;
const char* const kClassNames[] = {"ethical", "unethical"};

nlohmann::json ClassificationToJson(const ClassificationMetrics& m) {
  nlohmann::json per_class;
  for (int c = 0; c < 2; ++c) {
    const ClassScores& s = m.per_class[c];
    per_class[kClassNames[c]] = {{"precision", s.precision},
                                 {"recall", s.recall},
                                 {"f1", s.f1},
                                 {"support", s.support},
                                 {"predicted", s.predicted}};
  }
  return {{"n", m.n},
          {"correct", m.correct},
          {"accuracy", m.accuracy},
          {"macro_f1", m.macro_f1},
          {"unparseable", m.unparseable},
          {"unparseable_rate", m.unparseable_rate},
          {"per_class", per_class},
          {"confusion",
           {{"rows", "gold: ethical, unethical"},
            {"columns", "predicted: ethical, unethical, unparseable"},
            {"counts", m.confusion}}}};
}

ClassificationMetrics ClassificationFromJson(const nlohmann::json& j) {
  ClassificationMetrics m;
  m.n = j.at("n").get<int64_t>();
  m.correct = j.at("correct").get<int64_t>();
  m.accuracy = j.at("accuracy").get<double>();
  m.macro_f1 = j.at("macro_f1").get<double>();
  m.unparseable = j.at("unparseable").get<int64_t>();
  m.unparseable_rate = j.at("unparseable_rate").get<double>();
  m.confusion = j.at("confusion").at("counts").get<std::array<std::array<int64_t, 3>, 2>>();
  for (int c = 0; c < 2; ++c) {
    const auto& s = j.at("per_class").at(kClassNames[c]);
    m.per_class[c] = {s.at("precision").get<double>(), s.at("recall").get<double>(), s.at("f1").get<double>(),
                      s.at("support").get<int64_t>(), s.at("predicted").get<int64_t>()};
  }
  return m;
}

nlohmann::json ReasonToJson(const ReasonMetrics& r) {
  return {{"pairs", r.pairs},
          {"rouge_l_f1", r.rouge_l_f1},
          {"bleu4", r.bleu.bleu},
          {"bleu_precisions", r.bleu.precisions},
          {"bleu_brevity_penalty", r.bleu.brevity_penalty},
          {"bleu_candidate_words", r.bleu.candidate_words},
          {"bleu_reference_words", r.bleu.reference_words},
          {"bleu_smoothing", "none"},
          {"mean_generated_words", r.mean_generated_words},
          {"mean_human_words", r.mean_human_words}};
}

ReasonMetrics ReasonFromJson(const nlohmann::json& j) {
  ReasonMetrics r;
  r.pairs = j.at("pairs").get<int64_t>();
  r.rouge_l_f1 = j.at("rouge_l_f1").get<double>();
  r.bleu.bleu = j.at("bleu4").get<double>();
  r.bleu.precisions = j.at("bleu_precisions").get<std::array<double, 4>>();
  r.bleu.brevity_penalty = j.at("bleu_brevity_penalty").get<double>();
  r.bleu.candidate_words = j.at("bleu_candidate_words").get<int64_t>();
  r.bleu.reference_words = j.at("bleu_reference_words").get<int64_t>();
  r.mean_generated_words = j.at("mean_generated_words").get<double>();
  r.mean_human_words = j.at("mean_human_words").get<double>();
  return r;
}

nlohmann::json MarToJson(const MarProxy& m) {
  return {{"n", m.n},
          {"missing_reason", m.missing_reason},
          {"wrong_verdict", m.wrong_verdict},
          {"misaligned", m.misaligned},
          {"rate", m.rate}};
}

MarProxy MarFromJson(const nlohmann::json& j) {
  MarProxy m;
  m.n = j.at("n").get<int64_t>();
  m.missing_reason = j.at("missing_reason").get<int64_t>();
  m.wrong_verdict = j.at("wrong_verdict").get<int64_t>();
  m.misaligned = j.at("misaligned").get<int64_t>();
  m.rate = j.at("rate").get<double>();
  return m;
}

nlohmann::json InfoToJson(const ReportInfo& i) {
  return {{"model", i.model},           {"checkpoint", i.checkpoint},
          {"objective", i.objective},   {"template", i.template_name},
          {"data", i.data_file},        {"mode", i.mode},
          {"world_size", i.world_size}, {"backend", i.backend},
          {"batch_size", i.batch_size}, {"max_new_tokens", i.max_new_tokens},
          {"limit", i.limit},           {"subset", i.subset}};
}

ReportInfo InfoFromJson(const nlohmann::json& j) {
  ReportInfo i;
  i.model = j.at("model").get<std::string>();
  i.checkpoint = j.at("checkpoint").get<std::string>();
  i.objective = j.at("objective").get<std::string>();
  i.template_name = j.at("template").get<std::string>();
  i.data_file = j.at("data").get<std::string>();
  i.mode = j.at("mode").get<std::string>();
  i.world_size = j.at("world_size").get<int>();
  i.backend = j.at("backend").get<std::string>();
  i.batch_size = j.at("batch_size").get<int64_t>();
  i.max_new_tokens = j.at("max_new_tokens").get<int64_t>();
  i.limit = j.at("limit").get<int64_t>();
  i.subset = j.value("subset", std::string("head"));  // Reports before eval.subset existed.
  return i;
}

nlohmann::json TimingToJson(const EvalReport& r) {
  nlohmann::json ranks = nlohmann::json::array();
  int64_t tokens = 0, examples = 0;
  for (const RankStats& s : r.ranks) {
    ranks.push_back(StatsToJson(s));
    tokens += s.prompt_tokens + s.generated_tokens;
    examples += s.examples;
  }
  const double wall = r.wall_seconds;
  return {{"wall_seconds", wall},
          {"tokens_per_s", wall > 0 ? tokens / wall : 0.0},
          {"examples_per_s", wall > 0 ? examples / wall : 0.0},
          {"ranks", ranks}};
}

}  // namespace

EvalReport BuildReport(const ReportInfo& info, const std::vector<ExampleResult>& results,
                       const std::vector<RankStats>& ranks) {
  std::vector<int> gold, predicted;
  std::vector<std::string> reasons, human;
  for (const ExampleResult& r : results) {
    gold.push_back(r.gold);
    predicted.push_back(r.predicted);
    reasons.push_back(r.reason);
    human.push_back(r.gold_reason);
  }
  EvalReport report;
  report.info = info;
  report.n = static_cast<int64_t>(results.size());
  report.classification = ComputeClassification(gold, predicted);
  report.ranks = ranks;
  for (const RankStats& s : ranks) report.wall_seconds = std::max(report.wall_seconds, s.seconds);
  if (info.mode != "generate") return report;
  report.mean_reason_words = MeanWords(reasons);
  const ReasonMetrics reason = ComputeReasonMetrics(reasons, human);
  if (reason.pairs > 0) report.reason = reason;
  if (info.objective == "lr") report.mar_proxy = ComputeMarProxy(gold, predicted, reasons);
  return report;
}

nlohmann::json ReportToJson(const EvalReport& r) {
  nlohmann::json metrics = ClassificationToJson(r.classification);
  metrics["reason"] = r.reason ? ReasonToJson(*r.reason) : nlohmann::json(nullptr);
  metrics["mar_proxy"] = r.mar_proxy ? MarToJson(*r.mar_proxy) : nlohmann::json(nullptr);
  metrics["mean_reason_words"] = r.mean_reason_words;
  nlohmann::json j = {{"format", kReportFormat}, {"version", kReportVersion}, {"row", RowLabel(r)}};
  j.update(InfoToJson(r.info));
  j["n"] = r.n;
  j["metrics"] = metrics;
  j["timing"] = TimingToJson(r);
  return j;
}

EvalReport ReportFromJson(const nlohmann::json& j, const std::string& source) {
  DFAR_CHECK(j.is_object() && j.value("format", "") == kReportFormat, source, ": not a ", kReportFormat,
             " file (no matching \"format\" field)");
  DFAR_CHECK(j.value("version", 0) == kReportVersion, source, ": ", kReportFormat, " version ", j.value("version", 0),
             " is not supported; this build reads version ", kReportVersion);
  EvalReport r;
  try {
    r.info = InfoFromJson(j);
    r.n = j.at("n").get<int64_t>();
    const auto& m = j.at("metrics");
    r.classification = ClassificationFromJson(m);
    if (!m.at("reason").is_null()) r.reason = ReasonFromJson(m.at("reason"));
    if (!m.at("mar_proxy").is_null()) r.mar_proxy = MarFromJson(m.at("mar_proxy"));
    r.mean_reason_words = m.at("mean_reason_words").get<double>();
    r.wall_seconds = j.at("timing").at("wall_seconds").get<double>();
    for (const auto& s : j.at("timing").at("ranks")) r.ranks.push_back(StatsFromJson(s));
  } catch (const nlohmann::json::exception& e) {
    DFAR_THROW(source, ": malformed eval report: ", e.what());
  }
  r.source = source;
  return r;
}

EvalReport ReadReport(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(path)) file = (std::filesystem::path(path) / "eval_report.json").string();
  const std::string bytes = ReadFileBytes(file);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(bytes);
  } catch (const nlohmann::json::exception& e) {
    DFAR_THROW(file, ": not valid JSON: ", e.what());
  }
  return ReportFromJson(j, file);
}

std::string RowLabel(const EvalReport& report) {
  if (report.info.checkpoint.empty()) return "pre-trained";
  return report.info.objective == "l" ? "L" : "L+R";
}

}  // namespace dfar
