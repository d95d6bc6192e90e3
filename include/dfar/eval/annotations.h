// The human-annotation CSV and the human MAR.
//
// Owns: the file a person fills in to judge whether generated reasons align
// with the human ones, and the misaligned-reason rate (MAR) read back from it.
// Columns, in order: statement, gold_label, predicted_label, generated_reason,
// aligned. gold_label is 0/1; predicted_label is 0/1, or -1 for an
// unparseable output; `aligned` is written empty for the annotator, who fills
// 1 (aligned) or 0 (misaligned); yes/no/true/false (any case) are accepted.
// Failure: ReadAnnotations throws dfar::Error naming `file:line` for an empty
// row, an empty or unknown `aligned` value, a bad label, a missing column
// (via the CSV reader, which also names malformed CSV), or a file with no rows.
// Thread-safety: free functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dfar {

struct AnnotationRow {
  std::string statement;
  int gold_label = 0;
  int predicted_label = 0;  // -1: unparseable.
  std::string generated_reason;
  int aligned = -1;  // 1, 0, or -1 when not yet annotated (written files only).
  int64_t line = 0;  // Source line when read.
};

// RFC 4180 text of the CSV, header first; `aligned` is empty where -1.
std::string AnnotationsCsv(const std::vector<AnnotationRow>& rows);

// Reads a filled-in annotation CSV (every row must have `aligned`).
std::vector<AnnotationRow> ReadAnnotations(const std::string& path);

struct HumanMar {
  int64_t n = 0;
  int64_t aligned = 0;
  int64_t misaligned = 0;
  double mar = 0;  // misaligned / n.
};

HumanMar ComputeHumanMar(const std::vector<AnnotationRow>& rows);

// One CSV field, quoted when it holds a comma, quote, CR or LF.
std::string CsvField(const std::string& text);

}  // namespace dfar
