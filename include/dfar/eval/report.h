// Eval reports: what a finished evaluation writes, and the comparison table.
//
// Owns: EvalReport (run facts, metrics, timing), its JSON (format
// "dfar-eval-report", version 1) and Markdown forms, the output files, and
// `dfar eval compare`'s table. Torch-free.
//
// Files written by WriteEvalOutputs into out_dir, each atomically (written to
// "<name>.tmp", then renamed), eval_report.json last, so that a directory
// whose eval_report.json exists holds a complete evaluation:
//   predictions.jsonl  one JSON object per example, in original order
//   annotations.csv    statement, gold_label, predicted_label, generated_reason, aligned (empty)
//   eval_report.md     the report for people
//   eval_report.json   the report for machines
// Failure: dfar::Error naming the path for I/O errors; ReadReport names the
// file for malformed JSON, a foreign format or an unknown version.
// Thread-safety: free functions; call WriteEvalOutputs from one rank only.
#pragma once

#include "dfar/core/file_util.h"  // WriteFileAtomic

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dfar/eval/metrics.h"
#include "dfar/eval/results.h"

namespace dfar {

// Facts about the run that the metrics do not carry.
struct ReportInfo {
  std::string model;       // Model path (the base model for a checkpoint).
  std::string checkpoint;  // Empty: the pre-trained model was evaluated.
  std::string objective;   // "l" or "lr".
  std::string template_name;
  std::string data_file;
  std::string mode;  // "generate" or "likelihood".
  int world_size = 1;
  std::string backend;  // Communicator backend: "single", "mpi", ...
  int64_t batch_size = 0;
  int64_t max_new_tokens = 0;
  int64_t limit = 0;
  std::string subset = "head";  // Which `limit` examples (eval.subset).
};

struct EvalReport {
  ReportInfo info;
  int64_t n = 0;
  ClassificationMetrics classification;
  std::optional<ReasonMetrics> reason;  // Generate mode with human reasons only.
  std::optional<MarProxy> mar_proxy;    // Generate mode, objective lr only.
  double mean_reason_words = 0;         // Mean words of generated reasons, over all examples.
  double wall_seconds = 0;              // Slowest rank's evaluation time.
  std::vector<RankStats> ranks;
  std::string source;  // Where ReadReport read it from (not serialised).
};

// Computes every metric from the gathered results.
EvalReport BuildReport(const ReportInfo& info, const std::vector<ExampleResult>& results,
                       const std::vector<RankStats>& ranks);

nlohmann::json ReportToJson(const EvalReport& report);
EvalReport ReportFromJson(const nlohmann::json& j, const std::string& source);
// `path` is an eval_report.json or a directory holding one.
EvalReport ReadReport(const std::string& path);

std::string ReportToMarkdown(const EvalReport& report);
std::string PredictionsJsonl(const std::vector<ExampleResult>& results);

// Creates out_dir and writes the four files (see above).
void WriteEvalOutputs(const std::string& out_dir, const EvalReport& report, const std::vector<ExampleResult>& results);

// A few lines for the console: examples, accuracy, macro F1, reason metrics.
std::string ReportSummary(const EvalReport& report);

// "pre-trained" (no checkpoint), else "L" or "L+R" from the objective.
std::string RowLabel(const EvalReport& report);

// The paper-style table: one row per report, columns accuracy, macro F1,
// MAR proxy and ROUGE-L ("n/a" where a report has no such metric).
std::string CompareTable(const std::vector<EvalReport>& reports);

}  // namespace dfar
