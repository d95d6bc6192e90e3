// Report text (Markdown, the compare table) and the atomic output files.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "dfar/core/error.h"
#include "dfar/eval/annotations.h"
#include "dfar/eval/report.h"

#include "dfar/core/file_util.h"

namespace dfar {
namespace {

const char* const kClassNames[] = {"ethical", "unethical"};

std::string Fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

std::string Percent(double ratio) {
  return Fixed(100.0 * ratio, 1) + "%";
}

// "a/b/model.gguf" -> "model.gguf"; "a/llama/" -> "llama".
std::string BaseName(const std::string& path) {
  std::filesystem::path p(path);
  if (!p.has_filename()) p = p.parent_path();
  return p.filename().string();
}

std::string Count(int64_t v) {
  return std::to_string(v);
}

// A Markdown table whose columns are padded so that it reads in a terminal too.
std::string Table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size(), 3);
  auto widen = [&width](const std::vector<std::string>& r) {
    for (size_t c = 0; c < r.size() && c < width.size(); ++c) width[c] = std::max(width[c], r[c].size());
  };
  widen(header);
  for (const auto& r : rows) widen(r);
  auto line = [&width](const std::vector<std::string>& r) {
    std::string out = "|";
    for (size_t c = 0; c < width.size(); ++c) {
      const std::string cell = c < r.size() ? r[c] : "";
      out += " " + cell + std::string(width[c] - cell.size(), ' ') + " |";
    }
    return out + "\n";
  };
  std::string out = line(header) + "|";
  for (size_t w : width) out += std::string(w + 2, '-') + "|";
  out += "\n";
  for (const auto& r : rows) out += line(r);
  return out;
}

std::string RunSection(const EvalReport& r) {
  const ReportInfo& i = r.info;
  return Table({"run", "value"},
               {{"row", RowLabel(r)},
                {"model", i.model},
                {"checkpoint", i.checkpoint.empty() ? "(none: pre-trained)" : i.checkpoint},
                {"objective", i.objective == "l" ? "L (label)" : "L+R (label + reason)"},
                {"template", i.template_name},
                {"data", i.data_file},
                {"mode", i.mode},
                {"examples", Count(r.n)},
                {"world size", Count(i.world_size) + " (" + i.backend + ")"},
                {"batch size / max new tokens", Count(i.batch_size) + " / " + Count(i.max_new_tokens)}});
}

std::string Ci(const Interval& i, bool percent) {
  return "[" + (percent ? Fixed(100.0 * i.low, 1) : Fixed(i.low, 3)) + ", " +
         (percent ? Fixed(100.0 * i.high, 1) : Fixed(i.high, 3)) + "]";
}

std::string WithCi(const Proportion& p) {
  return Percent(p.rate) + " " + Ci(p.ci, true) + " (" + Count(p.k) + "/" + Count(p.n) + ")";
}

std::string ClassificationSection(const EvalReport& r) {
  const ClassificationMetrics& m = r.classification;
  std::string out = "## Classification\n\n";
  out +=
      Table({"metric", "value [95% interval]"}, {{"accuracy", WithCi(r.accuracy)},
                                                 {"unparseable", WithCi(r.unparseable)},
                                                 {"macro F1", Fixed(m.macro_f1, 3) + " " + Ci(r.macro_f1_ci, false)}});
  out +=
      "\n- accuracy: verdicts equal to the gold label; an unparseable output is wrong. Interval: Wilson score.\n"
      "- unparseable: outputs whose first sentence names neither verdict or both (an echo); see docs/metrics.md.\n"
      "- macro F1: mean of the two classes' F1. Interval: bootstrap percentile over examples (seeded).\n";
  std::vector<std::vector<std::string>> rows, confusion;
  for (int c = 0; c < 2; ++c) {
    const ClassScores& sc = m.per_class[c];
    rows.push_back({kClassNames[c], Fixed(sc.precision, 3), Fixed(sc.recall, 3), Fixed(sc.f1, 3), Count(sc.support)});
    confusion.push_back({kClassNames[c], Count(m.confusion[c][0]), Count(m.confusion[c][1]),
                         Count(m.confusion[c][kUnparseableColumn])});
  }
  out += "\n" + Table({"class", "precision", "recall", "F1", "support"}, rows);
  out += "\nConfusion matrix (rows: gold; columns: predicted):\n\n";
  return out + Table({"gold \\ predicted", "ethical", "unethical", "unparseable"}, confusion);
}

// Rows of one reason set (all rows, or the rows with a right verdict).
std::vector<std::string> ReasonColumn(const std::optional<ReasonReport>& r) {
  if (!r) return {"n/a", "n/a", "n/a", "n/a", "n/a", "n/a"};
  const ReasonMetrics& o = r->overlap;
  return {Count(r->rows),
          r->judged ? Fixed(r->similarity.mean, 3) + " " + Ci(r->similarity.ci, false) : "not judged",
          r->judged ? WithCi(r->misaligned) : "not judged",
          Fixed(o.rouge_l_f1, 4),
          Fixed(o.bleu.bleu, 4),
          Fixed(o.chrf.chrf, 4)};
}

std::string ReasonSection(const EvalReport& r) {
  std::string out = "## Reasons\n\n";
  if (r.info.mode != "generate") return out + "Likelihood mode generates no reasons.\n";
  if (!r.reasons_all) return out + "n/a: the data has no human reasons.\n";
  const auto all = ReasonColumn(r.reasons_all), right = ReasonColumn(r.reasons_correct);
  const char* names[] = {"rows",
                         "similarity to the human reason [95%]",
                         "automatic MAR [95%]",
                         "ROUGE-L F1 (mean)",
                         "BLEU-4 (corpus)",
                         "chrF (corpus)"};
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < all.size(); ++i) rows.push_back({names[i], all[i], right[i]});
  out += Table({"metric", "all rows", "rows with the right verdict"}, rows);
  out += "\n- similarity: cosine of sentence embeddings (" +
         (r.encoder.empty() ? std::string("no encoder") : r.encoder) +
         ") of the generated and the human reason; an empty reason scores 0. Interval: bootstrap.\n"
         "- automatic MAR: share of reasons whose " +
         Count(r.mar_k) +
         " nearest human train reasons mostly carry the other label (or that are empty); a stand-in for the paper's "
         "human MAR. Interval: Wilson.\n"
         "- ROUGE-L, BLEU-4, chrF: word and character overlap with the human reason, as rouge_score and sacrebleu "
         "compute them.\n";
  if (r.rule_ceiling)
    out += "- the rule's ceiling: on the human reasons themselves it agrees with gold in " + WithCi(*r.rule_ceiling) +
           ".\n";
  return out + "- mean generated reason words (all rows): " + Fixed(r.mean_reason_words, 1) + "\n";
}

std::string TimingSection(const EvalReport& r) {
  std::vector<std::vector<std::string>> rows;
  for (const RankStats& s : r.ranks) {
    rows.push_back({Count(s.rank), s.device, Count(s.examples), Count(s.prompt_tokens), Count(s.generated_tokens),
                    Fixed(s.seconds, 2), Fixed(s.tokens_per_s(), 1), Fixed(s.examples_per_s(), 3)});
  }
  return "## Timing\n\nWall time (slowest rank): " + Fixed(r.wall_seconds, 2) + " s\n\n" +
         Table({"rank", "device", "examples", "prompt tokens", "generated tokens", "seconds", "tokens/s", "examples/s"},
               rows);
}

}  // namespace

std::string ReportToMarkdown(const EvalReport& r) {
  return "# dfar eval report\n\n" + RunSection(r) + "\n" + ClassificationSection(r) + "\n" + ReasonSection(r) + "\n" +
         TimingSection(r);
}

std::string PredictionsJsonl(const std::vector<ExampleResult>& results) {
  std::string out;
  for (const ExampleResult& r : results) {
    nlohmann::json j = {{"index", r.index},         {"statement", r.statement}, {"gold", r.gold},
                        {"predicted", r.predicted}, {"parsed", r.parsed()},     {"generated", r.generated},
                        {"reason", r.reason}};
    out += DumpJson(j) + "\n";
  }
  return out;
}

void WriteEvalOutputs(const std::string& out_dir, const EvalReport& report, const std::vector<ExampleResult>& results) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  DFAR_CHECK(!ec, "cannot create eval output directory '", out_dir, "': ", ec.message());
  const std::filesystem::path dir(out_dir);
  // A stale report from an earlier run must not vouch for the new files.
  std::filesystem::remove(dir / "eval_report.json", ec);
  std::vector<AnnotationRow> rows;
  for (const ExampleResult& r : results) rows.push_back({r.statement, r.gold, r.predicted, r.reason, -1, 0});
  WriteFileAtomic((dir / "predictions.jsonl").string(), PredictionsJsonl(results));
  WriteFileAtomic((dir / "annotations.csv").string(), AnnotationsCsv(rows));
  WriteFileAtomic((dir / "eval_report.md").string(), ReportToMarkdown(report));
  WriteFileAtomic((dir / "eval_report.json").string(), DumpJson(ReportToJson(report), 2) + "\n");
}

std::string ReportSummary(const EvalReport& r) {
  const ClassificationMetrics& m = r.classification;
  std::string out = RowLabel(r) + " | " + BaseName(r.info.model) + " | " + BaseName(r.info.data_file) + " | " +
                    Count(r.n) + " examples | " + r.info.mode + " | world " + Count(r.info.world_size) + " (" +
                    r.info.backend + ")\n";
  out += "accuracy " + WithCi(r.accuracy) + "  macro F1 " + Fixed(m.macro_f1, 3) + "  unparseable " +
         Percent(r.unparseable.rate) + "\n";
  if (r.reasons_all) {
    const ReasonReport& a = *r.reasons_all;
    if (a.judged)
      out += "similarity " + Fixed(a.similarity.mean, 3) + "  automatic MAR " + Percent(a.misaligned.rate) + "  ";
    out += "ROUGE-L " + Fixed(a.overlap.rouge_l_f1, 4) + "  BLEU-4 " + Fixed(a.overlap.bleu.bleu, 4) + "  chrF " +
           Fixed(a.overlap.chrf.chrf, 4) + "  ";
  }
  if (r.info.mode == "generate") out += "mean reason words " + Fixed(r.mean_reason_words, 1) + "\n";
  return out + "wall " + Fixed(r.wall_seconds, 2) + " s\n";
}

namespace {

// Why two reports cannot be paired, or "" when they can.
std::string PairingProblem(const EvalReport& a, const EvalReport& b) {
  if (a.info.data_file != b.info.data_file)
    return "they evaluated different data files (" + a.info.data_file + " vs " + b.info.data_file + ")";
  if (a.example_index != b.example_index)
    return "they evaluated different example sets (" + Count(a.n) + " vs " + Count(b.n) +
           " examples, or other rows: check eval.limit / eval.subset)";
  return "";
}

std::string McNemarLine(const EvalReport& a, const EvalReport& b) {
  const McNemarResult m = McNemarExact(a.correct, b.correct);
  char buf[256];
  std::snprintf(
      buf, sizeof(buf), "- %s vs %s: exact McNemar p = %.4g (%lld examples; %lld right only in %s, %lld only in %s)\n",
      RowLabel(a).c_str(), RowLabel(b).c_str(), m.p_value, static_cast<long long>(m.n),
      static_cast<long long>(m.only_a), RowLabel(a).c_str(), static_cast<long long>(m.only_b), RowLabel(b).c_str());
  return buf;
}

std::string PairedTests(const std::vector<EvalReport>& reports) {
  const EvalReport *pre = nullptr, *l = nullptr, *lr = nullptr;
  for (const EvalReport& r : reports) {
    const std::string row = RowLabel(r);
    if (row == "pre-trained" && pre == nullptr) pre = &r;
    if (row == "L" && l == nullptr) l = &r;
    if (row == "L+R" && lr == nullptr) lr = &r;
  }
  std::string out;
  for (const EvalReport* tuned : {l, lr})
    if (tuned != nullptr && pre != nullptr) out += McNemarLine(*tuned, *pre);
  if (l != nullptr && lr != nullptr) out += McNemarLine(*lr, *l);
  return out.empty() ? out : "\nPaired tests on the same examples:\n" + out;
}

}  // namespace

std::string CompareTable(const std::vector<EvalReport>& reports, const std::vector<double>& human_mar) {
  for (size_t i = 1; i < reports.size(); ++i) {
    const std::string why = PairingProblem(reports[0], reports[i]);
    DFAR_CHECK(why.empty(), "eval compare: ", reports[0].source, " and ", reports[i].source,
               " cannot be paired: ", why);
  }
  std::vector<std::vector<std::string>> rows;
  const bool any_human = !human_mar.empty();
  for (size_t i = 0; i < reports.size(); ++i) {
    const EvalReport& r = reports[i];
    const auto& a = r.reasons_all;
    std::vector<std::string> row = {
        BaseName(r.info.model),
        RowLabel(r),
        Percent(r.accuracy.rate) + " " + Ci(r.accuracy.ci, true),
        Percent(r.unparseable.rate),
        Fixed(r.classification.macro_f1, 3),
        a && a->judged ? Fixed(a->similarity.mean, 3) : "n/a",
        a && a->judged ? Percent(a->misaligned.rate) + " " + Ci(a->misaligned.ci, true) : "n/a",
        a ? Fixed(a->overlap.rouge_l_f1, 4) : "n/a"};
    if (any_human) row.push_back(i < human_mar.size() && human_mar[i] >= 0 ? Percent(human_mar[i]) : "n/a");
    row.push_back(Count(r.n));
    rows.push_back(row);
  }
  std::vector<std::string> header = {"model",    "row",        "accuracy [95%]", "unparseable",
                                     "macro F1", "similarity", "auto MAR [95%]", "ROUGE-L"};
  if (any_human) header.push_back("human MAR");
  header.push_back("n");
  return Table(header, rows) + PairedTests(reports);
}

}  // namespace dfar
