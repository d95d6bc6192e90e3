#include "dfar/eval/annotations.h"

#include <algorithm>
#include <cctype>

#include "dfar/core/error.h"
#include "dfar/data/csv.h"

namespace dfar {
namespace {

const char* const kColumns[] = {"statement", "gold_label", "predicted_label", "generated_reason", "aligned"};

std::string Trimmed(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  std::string out = s.substr(b, e - b);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int ParseAligned(const std::string& cell, const std::string& where) {
  const std::string v = Trimmed(cell);
  DFAR_CHECK(!v.empty(), where, ": column 'aligned' is empty; annotate every row with 1 (aligned) or 0 (misaligned)");
  if (v == "1" || v == "yes" || v == "true") return 1;
  if (v == "0" || v == "no" || v == "false") return 0;
  DFAR_THROW(where, ": column 'aligned' has '", cell, "'; expected 1/0 (or yes/no, true/false)");
}

int ParseLabel(const std::string& cell, const char* column, bool allow_unparseable, const std::string& where) {
  const std::string v = Trimmed(cell);
  if (v == "0" || v == "1") return v == "1" ? 1 : 0;
  if (allow_unparseable && v == "-1") return -1;
  DFAR_THROW(where, ": column '", column, "' has '", cell, "'; expected 0 or 1",
             allow_unparseable ? " (or -1 for unparseable)" : "");
}

bool AllEmpty(const std::vector<std::string>& fields) {
  return std::all_of(fields.begin(), fields.end(), [](const std::string& f) { return Trimmed(f).empty(); });
}

}  // namespace

std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string AnnotationsCsv(const std::vector<AnnotationRow>& rows) {
  std::string out = "statement,gold_label,predicted_label,generated_reason,aligned\n";
  for (const AnnotationRow& r : rows) {
    out += CsvField(r.statement) + "," + std::to_string(r.gold_label) + "," + std::to_string(r.predicted_label) + "," +
           CsvField(r.generated_reason) + "," + (r.aligned < 0 ? "" : std::to_string(r.aligned)) + "\n";
  }
  return out;
}

std::vector<AnnotationRow> ReadAnnotations(const std::string& path) {
  const CsvTable table = ReadCsv(path);
  size_t col[5];
  for (int i = 0; i < 5; ++i) col[i] = table.Column(kColumns[i]);
  std::vector<AnnotationRow> rows;
  for (const CsvRecord& rec : table.rows) {
    const std::string where = path + ":" + std::to_string(rec.line);
    DFAR_CHECK(!AllEmpty(rec.fields), where, ": empty row; every row needs a statement, labels and 'aligned'");
    AnnotationRow row;
    row.line = rec.line;
    row.statement = rec.fields[col[0]];
    DFAR_CHECK(!Trimmed(row.statement).empty(), where, ": column 'statement' is empty");
    row.gold_label = ParseLabel(rec.fields[col[1]], kColumns[1], false, where);
    row.predicted_label = ParseLabel(rec.fields[col[2]], kColumns[2], true, where);
    row.generated_reason = rec.fields[col[3]];
    row.aligned = ParseAligned(rec.fields[col[4]], where);
    rows.push_back(std::move(row));
  }
  DFAR_CHECK(!rows.empty(), path, ": no annotated rows");
  return rows;
}

HumanMar ComputeHumanMar(const std::vector<AnnotationRow>& rows) {
  HumanMar m;
  m.n = static_cast<int64_t>(rows.size());
  for (const AnnotationRow& r : rows) {
    DFAR_CHECK(r.aligned == 0 || r.aligned == 1, "annotation at line ", r.line, " is not annotated");
    (r.aligned == 1 ? m.aligned : m.misaligned) += 1;
  }
  m.mar = m.n == 0 ? 0.0 : static_cast<double>(m.misaligned) / static_cast<double>(m.n);
  return m;
}

}  // namespace dfar
