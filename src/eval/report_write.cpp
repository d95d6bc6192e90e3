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

std::string ClassificationSection(const ClassificationMetrics& m) {
  std::string out = "## Classification\n\n";
  out +=
      Table({"metric", "value"}, {{"accuracy", Percent(m.accuracy) + " (" + Count(m.correct) + "/" + Count(m.n) + ")"},
                                  {"macro F1", Fixed(m.macro_f1, 3)},
                                  {"unparseable", Percent(m.unparseable_rate) + " (" + Count(m.unparseable) + ")"}});
  std::vector<std::vector<std::string>> rows, confusion;
  for (int c = 0; c < 2; ++c) {
    const ClassScores& s = m.per_class[c];
    rows.push_back({kClassNames[c], Fixed(s.precision, 3), Fixed(s.recall, 3), Fixed(s.f1, 3), Count(s.support)});
    confusion.push_back({kClassNames[c], Count(m.confusion[c][0]), Count(m.confusion[c][1]),
                         Count(m.confusion[c][kUnparseableColumn])});
  }
  out += "\n" + Table({"class", "precision", "recall", "F1", "support"}, rows);
  out += "\nConfusion matrix (rows: gold; columns: predicted):\n\n";
  return out + Table({"gold \\ predicted", "ethical", "unethical", "unparseable"}, confusion);
}

std::string ReasonSection(const EvalReport& r) {
  std::string out = "## Reasons\n\n";
  if (r.info.mode != "generate") return out + "Likelihood mode generates no reasons.\n";
  std::vector<std::vector<std::string>> rows = {{"mean generated reason words (all)", Fixed(r.mean_reason_words, 1)}};
  if (r.reason) {
    const ReasonMetrics& m = *r.reason;
    rows.push_back({"pairs with a human reason", Count(m.pairs)});
    rows.push_back({"ROUGE-L F1 (mean)", Fixed(m.rouge_l_f1, 4)});
    rows.push_back({"BLEU-4 (corpus, no smoothing)", Fixed(m.bleu.bleu, 4)});
    rows.push_back({"BLEU brevity penalty", Fixed(m.bleu.brevity_penalty, 4)});
    rows.push_back(
        {"mean words: generated / human", Fixed(m.mean_generated_words, 1) + " / " + Fixed(m.mean_human_words, 1)});
  } else {
    rows.push_back({"ROUGE-L / BLEU", "n/a (the data has no human reasons)"});
  }
  if (r.mar_proxy) {
    const MarProxy& m = *r.mar_proxy;
    rows.push_back({"MAR proxy", Percent(m.rate) + " (" + Count(m.misaligned) + "/" + Count(m.n) + ": " +
                                     Count(m.missing_reason) + " missing reason, " + Count(m.wrong_verdict) +
                                     " wrong verdict)"});
  }
  return out + Table({"metric", "value"}, rows);
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
  return "# dfar eval report\n\n" + RunSection(r) + "\n" + ClassificationSection(r.classification) + "\n" +
         ReasonSection(r) + "\n" + TimingSection(r);
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
  out += "accuracy " + Percent(m.accuracy) + " (" + Count(m.correct) + "/" + Count(m.n) + ")  macro F1 " +
         Fixed(m.macro_f1, 3) + "  unparseable " + Percent(m.unparseable_rate) + "\n";
  if (r.reason) {
    out += "ROUGE-L " + Fixed(r.reason->rouge_l_f1, 4) + "  BLEU-4 " + Fixed(r.reason->bleu.bleu, 4) + "  ";
  }
  if (r.mar_proxy) out += "MAR proxy " + Percent(r.mar_proxy->rate) + "  ";
  if (r.info.mode == "generate") out += "mean reason words " + Fixed(r.mean_reason_words, 1) + "\n";
  return out + "wall " + Fixed(r.wall_seconds, 2) + " s\n";
}

std::string CompareTable(const std::vector<EvalReport>& reports) {
  std::vector<std::vector<std::string>> rows;
  for (const EvalReport& r : reports) {
    const std::string model = BaseName(r.info.model);
    rows.push_back({model, RowLabel(r), Percent(r.classification.accuracy), Fixed(r.classification.macro_f1, 3),
                    r.mar_proxy ? Percent(r.mar_proxy->rate) : "n/a", r.reason ? Fixed(r.reason->rouge_l_f1, 4) : "n/a",
                    Count(r.n), BaseName(r.info.data_file)});
  }
  return Table({"model", "row", "accuracy", "macro F1", "MAR proxy", "ROUGE-L", "n", "data"}, rows);
}

}  // namespace dfar
