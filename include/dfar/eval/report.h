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
//   eval_report.json   the report for machines (format version 2: intervals,
//                      reason judging, and per-example correctness for
//                      paired tests; version 1 reports are refused)
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
#include "dfar/eval/stats.h"

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

// A proportion with its 95% Wilson interval.
struct Proportion {
  int64_t k = 0, n = 0;
  double rate = 0;
  Interval ci;
};
Proportion MakeProportion(int64_t k, int64_t n);

// A mean over rows with its 95% bootstrap percentile interval.
struct MeanWithCi {
  int64_t n = 0;
  double mean = 0;
  Interval ci;
};

// The reasons of one set of rows (all rows, or the rows whose verdict was right).
struct ReasonReport {
  int64_t rows = 0;
  ReasonMetrics overlap;  // ROUGE-L, BLEU-4, chrF against the human reasons.
  bool judged = false;    // The sentence encoder read them (eval.encoder).
  MeanWithCi similarity;  // Cosine to the human reason.
  Proportion misaligned;  // Automatic MAR (reason_judge.h).
};

struct ReportOptions {
  int64_t bootstrap_resamples = 1000;
  uint64_t seed = 1234;
  int64_t mar_k = 15;
  std::string encoder;  // The encoder that judged the reasons ("" = none).
};

struct EvalReport {
  ReportInfo info;
  int64_t n = 0;
  ClassificationMetrics classification;
  Proportion accuracy;     // Wilson interval.
  Proportion unparseable;  // Wilson interval.
  Interval macro_f1_ci;    // Bootstrap.
  // Generate mode, objective L+R, data with human reasons: over all rows,
  // and over the rows whose verdict was right.
  std::optional<ReasonReport> reasons_all, reasons_correct;
  // The automatic-MAR rule applied to the human reasons: how often it
  // agrees with gold (its ceiling), when reasons were judged.
  std::optional<Proportion> rule_ceiling;
  std::string encoder;
  int64_t mar_k = 0;
  double mean_reason_words = 0;  // Mean words of generated reasons, over all examples.
  // Per example, in order: the data row index and whether the verdict was
  // right. `dfar eval compare` pairs reports on these (McNemar).
  std::vector<int64_t> example_index;
  std::vector<bool> correct;
  double wall_seconds = 0;  // Slowest rank's evaluation time.
  std::vector<RankStats> ranks;
  std::string source;  // Where ReadReport read it from (not serialised).
};

// Computes every metric from the gathered results.
EvalReport BuildReport(const ReportInfo& info, const std::vector<ExampleResult>& results,
                       const std::vector<RankStats>& ranks, const ReportOptions& options = {});

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

// The paper-style table: one row per report (accuracy with its interval,
// unparseable, macro F1, similarity, automatic MAR, ROUGE-L; "n/a" where a
// report has no such metric), then exact McNemar p-values between each
// fine-tuned row and the pre-trained row and between L+R and L. Human MAR
// (from filled annotation files, matched to rows by position) is shown
// beside the automatic one when `human_mar` holds a value for a row.
// Throws when reports were made on different example sets (data file or
// example indices), saying which differ: they cannot be paired.
std::string CompareTable(const std::vector<EvalReport>& reports, const std::vector<double>& human_mar = {});

}  // namespace dfar
