#include "dfar/eval/report.h"

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "dfar/core/error.h"
#include "dfar/data/csv.h"

namespace dfar {
namespace {

constexpr const char* kReportFormat = "dfar-eval-report";
constexpr int kReportVersion = 2;
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

nlohmann::json IntervalToJson(const Interval& i) {
  return {i.low, i.high};
}

Interval IntervalFromJson(const nlohmann::json& j) {
  return {j.at(0).get<double>(), j.at(1).get<double>()};
}

nlohmann::json ProportionToJson(const Proportion& p) {
  return {{"k", p.k}, {"n", p.n}, {"rate", p.rate}, {"ci95", IntervalToJson(p.ci)}};
}

Proportion ProportionFromJson(const nlohmann::json& j) {
  Proportion p;
  p.k = j.at("k").get<int64_t>();
  p.n = j.at("n").get<int64_t>();
  p.rate = j.at("rate").get<double>();
  p.ci = IntervalFromJson(j.at("ci95"));
  return p;
}

nlohmann::json OverlapToJson(const ReasonMetrics& r) {
  return {{"pairs", r.pairs},
          {"rouge_l_f1", r.rouge_l_f1},
          {"bleu4", r.bleu.bleu},
          {"bleu_precisions", r.bleu.precisions},
          {"bleu_brevity_penalty", r.bleu.brevity_penalty},
          {"bleu_smoothing", "exp (sacrebleu default)"},
          {"chrf", r.chrf.chrf},
          {"mean_generated_words", r.mean_generated_words},
          {"mean_human_words", r.mean_human_words}};
}

ReasonMetrics OverlapFromJson(const nlohmann::json& j) {
  ReasonMetrics r;
  r.pairs = j.at("pairs").get<int64_t>();
  r.rouge_l_f1 = j.at("rouge_l_f1").get<double>();
  r.bleu.bleu = j.at("bleu4").get<double>();
  r.bleu.precisions = j.at("bleu_precisions").get<std::array<double, 4>>();
  r.bleu.brevity_penalty = j.at("bleu_brevity_penalty").get<double>();
  r.chrf.chrf = j.at("chrf").get<double>();
  r.mean_generated_words = j.at("mean_generated_words").get<double>();
  r.mean_human_words = j.at("mean_human_words").get<double>();
  return r;
}

nlohmann::json ReasonReportToJson(const std::optional<ReasonReport>& r) {
  if (!r) return nullptr;
  nlohmann::json j = {{"rows", r->rows}, {"overlap", OverlapToJson(r->overlap)}, {"judged", r->judged}};
  j["similarity"] = r->judged ? nlohmann::json{{"n", r->similarity.n},
                                               {"mean", r->similarity.mean},
                                               {"ci95", IntervalToJson(r->similarity.ci)}}
                              : nlohmann::json(nullptr);
  j["auto_mar"] = r->judged ? ProportionToJson(r->misaligned) : nlohmann::json(nullptr);
  return j;
}

std::optional<ReasonReport> ReasonReportFromJson(const nlohmann::json& j) {
  if (j.is_null()) return std::nullopt;
  ReasonReport r;
  r.rows = j.at("rows").get<int64_t>();
  r.overlap = OverlapFromJson(j.at("overlap"));
  r.judged = j.at("judged").get<bool>();
  if (r.judged) {
    const auto& s = j.at("similarity");
    r.similarity = {s.at("n").get<int64_t>(), s.at("mean").get<double>(), IntervalFromJson(s.at("ci95"))};
    r.misaligned = ProportionFromJson(j.at("auto_mar"));
  }
  return r;
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

Proportion MakeProportion(int64_t k, int64_t n) {
  return {k, n, n > 0 ? static_cast<double>(k) / static_cast<double>(n) : 0.0, WilsonInterval(k, n)};
}

namespace {

// Macro F1 of the rows `sample` picks (a bootstrap resample).
double MacroF1Of(const std::vector<int>& gold, const std::vector<int>& predicted, const std::vector<int64_t>& sample) {
  std::vector<int> g, p;
  for (int64_t i : sample) {
    g.push_back(gold[static_cast<size_t>(i)]);
    p.push_back(predicted[static_cast<size_t>(i)]);
  }
  return ComputeClassification(g, p).macro_f1;
}

// The reason metrics of the rows in `rows`.
ReasonReport ReasonsOf(const std::vector<const ExampleResult*>& rows, const ReportOptions& options) {
  ReasonReport out;
  out.rows = static_cast<int64_t>(rows.size());
  std::vector<std::string> generated, human;
  std::vector<double> similarity;
  int64_t misaligned = 0;
  out.judged = !rows.empty();
  for (const ExampleResult* r : rows) {
    generated.push_back(r->reason);
    human.push_back(r->gold_reason);
    out.judged = out.judged && r->judged;
    similarity.push_back(r->similarity);
    misaligned += r->misaligned() ? 1 : 0;
  }
  out.overlap = ComputeReasonMetrics(generated, human);
  if (out.judged) {
    const int64_t n = out.rows;
    out.similarity = {n,
                      n > 0 ? std::accumulate(similarity.begin(), similarity.end(), 0.0) / static_cast<double>(n) : 0.0,
                      BootstrapMeanInterval(similarity, static_cast<int>(options.bootstrap_resamples), options.seed)};
    out.misaligned = MakeProportion(misaligned, n);
  }
  return out;
}

void AddReasonReports(const std::vector<ExampleResult>& results, const ReportOptions& options, EvalReport* report) {
  std::vector<const ExampleResult*> all, correct;
  int64_t ceiling = 0, judged = 0;
  for (const ExampleResult& r : results) {
    if (r.gold_reason.empty()) continue;
    all.push_back(&r);
    if (r.predicted == r.gold) correct.push_back(&r);
    if (r.judged) {
      ++judged;
      ceiling += r.human_reason_label == r.gold ? 1 : 0;
    }
  }
  if (all.empty()) return;
  report->reasons_all = ReasonsOf(all, options);
  report->reasons_correct = ReasonsOf(correct, options);
  if (judged > 0) report->rule_ceiling = MakeProportion(ceiling, judged);
}

}  // namespace

EvalReport BuildReport(const ReportInfo& info, const std::vector<ExampleResult>& results,
                       const std::vector<RankStats>& ranks, const ReportOptions& options) {
  std::vector<int> gold, predicted;
  std::vector<std::string> reasons;
  EvalReport report;
  for (const ExampleResult& r : results) {
    gold.push_back(r.gold);
    predicted.push_back(r.predicted);
    reasons.push_back(r.reason);
    report.example_index.push_back(r.index);
    report.correct.push_back(r.predicted == r.gold);
  }
  report.info = info;
  report.n = static_cast<int64_t>(results.size());
  report.classification = ComputeClassification(gold, predicted);
  report.accuracy = MakeProportion(report.classification.correct, report.n);
  report.unparseable = MakeProportion(report.classification.unparseable, report.n);
  report.macro_f1_ci = BootstrapInterval(
      report.n, [&](const std::vector<int64_t>& sample) { return MacroF1Of(gold, predicted, sample); },
      static_cast<int>(options.bootstrap_resamples), options.seed);
  report.encoder = options.encoder;
  report.mar_k = options.mar_k;
  report.ranks = ranks;
  for (const RankStats& s : ranks) report.wall_seconds = std::max(report.wall_seconds, s.seconds);
  if (info.mode != "generate") return report;
  report.mean_reason_words = MeanWords(reasons);
  // Objective L is never asked for a reason: judging its empty reasons
  // would only restate that (similarity 0, every reason misaligned).
  if (info.objective == "lr") AddReasonReports(results, options, &report);
  return report;
}

nlohmann::json ReportToJson(const EvalReport& r) {
  nlohmann::json metrics = ClassificationToJson(r.classification);
  metrics["accuracy_ci95"] = IntervalToJson(r.accuracy.ci);
  metrics["unparseable_ci95"] = IntervalToJson(r.unparseable.ci);
  metrics["macro_f1_ci95"] = IntervalToJson(r.macro_f1_ci);
  metrics["reasons_all"] = ReasonReportToJson(r.reasons_all);
  metrics["reasons_correct"] = ReasonReportToJson(r.reasons_correct);
  metrics["auto_mar_rule"] = {
      {"encoder", r.encoder},
      {"k", r.mar_k},
      {"ceiling", r.rule_ceiling ? ProportionToJson(*r.rule_ceiling) : nlohmann::json(nullptr)}};
  metrics["mean_reason_words"] = r.mean_reason_words;
  nlohmann::json j = {{"format", kReportFormat}, {"version", kReportVersion}, {"row", RowLabel(r)}};
  j.update(InfoToJson(r.info));
  j["n"] = r.n;
  j["metrics"] = metrics;
  j["examples"] = {{"index", r.example_index}, {"correct", r.correct}};
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
    r.accuracy = MakeProportion(r.classification.correct, r.n);
    r.unparseable = MakeProportion(r.classification.unparseable, r.n);
    r.macro_f1_ci = IntervalFromJson(m.at("macro_f1_ci95"));
    r.reasons_all = ReasonReportFromJson(m.at("reasons_all"));
    r.reasons_correct = ReasonReportFromJson(m.at("reasons_correct"));
    const auto& rule = m.at("auto_mar_rule");
    r.encoder = rule.at("encoder").get<std::string>();
    r.mar_k = rule.at("k").get<int64_t>();
    if (!rule.at("ceiling").is_null()) r.rule_ceiling = ProportionFromJson(rule.at("ceiling"));
    r.mean_reason_words = m.at("mean_reason_words").get<double>();
    r.example_index = j.at("examples").at("index").get<std::vector<int64_t>>();
    r.correct = j.at("examples").at("correct").get<std::vector<bool>>();
    DFAR_CHECK(r.example_index.size() == r.correct.size() && static_cast<int64_t>(r.correct.size()) == r.n, source,
               ": examples.index and examples.correct must both hold n = ", r.n, " entries");
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
