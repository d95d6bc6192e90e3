// Loading examples from CSV through a column/label mapping, and splitting.
//
// Owns: mapping CsvTable rows to Examples according to DataConfig (column
// names, delimiter, label rule: value map or numeric threshold), the
// held-out validation split, and summary statistics.
// Failure: throws dfar::Error naming `file:line` and the column for a missing
// column, an unknown label value, a non-numeric score under the threshold rule,
// or an empty statement.
// Thread-safety: free functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dfar/core/config.h"
#include "dfar/data/example.h"

namespace dfar {

// Reads `path` and maps every data row to an Example. data.limit > 0 keeps
// `limit` rows, chosen by data.subset (see SubsetRows).
std::vector<Example> LoadExamples(const std::string& path, const DataConfig& spec);

// The rows (ascending) that `limit` of `total` keeps: "head" the first
// `limit`, "stride" rows floor(i * total / limit), i < limit, spread evenly
// over the file (DFAR's files are grouped by source, so a head is one kind of
// statement only). limit 0 or >= total keeps all.
std::vector<size_t> SubsetRows(size_t total, int64_t limit, const std::string& subset);

struct TrainValSplit {
  std::vector<Example> train;
  std::vector<Example> val;
};

// Deterministically holds out round(fraction * n) examples chosen by `seed`.
// Both parts keep file order. fraction 0 gives an empty val.
TrainValSplit HoldOutValidation(const std::vector<Example>& all, double fraction, uint64_t seed);

struct DatasetStats {
  int64_t rows = 0;
  int64_t ethical = 0;
  int64_t unethical = 0;
  int64_t with_reason = 0;
  int64_t non_ascii = 0;  // Rows with any non-ASCII byte in statement or reason.
  double mean_statement_chars = 0;
  double mean_reason_chars = 0;
  int64_t max_reason_chars = 0;
};

DatasetStats ComputeStats(const std::vector<Example>& examples);

}  // namespace dfar
