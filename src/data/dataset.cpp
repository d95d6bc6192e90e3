// Mapping CSV rows to Examples, the held-out split, and statistics; see
// dataset.h for the contract.
#include "dfar/data/dataset.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string_view>
#include <utility>

#include "dfar/core/error.h"
#include "dfar/data/csv.h"
#include "dfar/data/sampler.h"  // Rng: SplitMix64, the same stream on every platform.

namespace dfar {
namespace {

constexpr std::string_view kSpace = " \t\r\n\v\f";

std::string_view Trim(std::string_view s) {
  size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(kSpace) - begin + 1);
}

std::string JoinValues(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) out += (i > 0 ? ", '" : "'") + values[i] + "'";
  return out + "}";
}

bool Contains(const std::vector<std::string>& values, std::string_view cell) {
  for (const std::string& v : values) {
    if (Trim(v) == cell) return true;
  }
  return false;
}

// Column indices of one file, resolved once from the header.
struct Columns {
  size_t text = 0;
  size_t label = 0;
  size_t reason = 0;
  bool has_reason = false;
};

Columns ResolveColumns(const CsvTable& table, const DataConfig& spec) {
  Columns c;
  c.text = table.Column(spec.text_column);
  c.label = table.Column(spec.label_column);
  c.has_reason = !spec.reason_column.empty();
  if (c.has_reason) c.reason = table.Column(spec.reason_column);
  return c;
}

// Checked once per file rather than per row, so that a misconfigured value
// list fails before the first row and with a message about the config.
void CheckLabelRule(const DataConfig& spec) {
  if (spec.label_rule == "threshold") {
    DFAR_CHECK(std::isfinite(spec.label_threshold), "data.label_threshold must be a finite number, got ",
               spec.label_threshold);
    return;
  }
  DFAR_CHECK(spec.label_rule == "map", "data.label_rule must be 'map' or 'threshold', got '", spec.label_rule, "'");
  DFAR_CHECK(!spec.ethical_values.empty() && !spec.unethical_values.empty(),
             "data.label_rule=map needs non-empty data.ethical_values and data.unethical_values");
  for (const std::string& v : spec.ethical_values) {
    DFAR_CHECK(!Contains(spec.unethical_values, Trim(v)), "label value '", v,
               "' is in both data.ethical_values and data.unethical_values");
  }
}

int MapLabel(std::string_view cell, const DataConfig& spec, const std::string& where) {
  if (Contains(spec.ethical_values, cell)) return kEthical;
  if (Contains(spec.unethical_values, cell)) return kUnethical;
  DFAR_THROW(where, ": unknown label value '", cell, "' in column '", spec.label_column, "'; allowed: ethical ",
             JoinValues(spec.ethical_values), ", unethical ", JoinValues(spec.unethical_values));
}

// Strict: the whole trimmed cell must be one finite number. from_chars is
// used instead of strtod because it ignores the C locale (a "0,5" locale
// must not change what a file means) and reports trailing junk.
int ThresholdLabel(std::string_view cell, const DataConfig& spec, const std::string& where) {
  double score = 0;
  auto [end, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), score);
  bool ok = !cell.empty() && ec == std::errc() && end == cell.data() + cell.size() && std::isfinite(score);
  DFAR_CHECK(ok, where, ": label score '", cell, "' in column '", spec.label_column,
             "' is not a number (data.label_rule=threshold needs a numeric score)");
  return score >= spec.label_threshold ? kUnethical : kEthical;
}

// Surrounding whitespace is dropped from text fields: the DFAR train file
// ends some reasons with a stray '\r' or a space, which would otherwise
// become tokens the model is trained to emit.
Example MapRow(const CsvTable& table, size_t row, const Columns& cols, const DataConfig& spec) {
  const CsvRecord& record = table.rows[row];
  const std::string where = table.source + ":" + std::to_string(record.line);
  Example ex;
  ex.index = static_cast<int64_t>(row);
  ex.line = record.line;
  ex.statement = std::string(Trim(record.fields[cols.text]));
  DFAR_CHECK(!ex.statement.empty(), where, ": empty statement in column '", spec.text_column, "'");
  std::string_view label = Trim(record.fields[cols.label]);
  ex.label = spec.label_rule == "map" ? MapLabel(label, spec, where) : ThresholdLabel(label, spec, where);
  if (cols.has_reason) ex.reason = std::string(Trim(record.fields[cols.reason]));
  return ex;
}

char DelimiterOf(const DataConfig& spec) {
  DFAR_CHECK(spec.delimiter.size() == 1, "data.delimiter must be exactly one character, got '", spec.delimiter, "'");
  return spec.delimiter[0];
}

// Salted so that the split is not correlated with a shuffle that uses the
// same run seed.
constexpr uint64_t kHoldOutSalt = 0x686F6C646F757421ULL;  // "holdout!"

// held[i] is true for the k indices a partial Fisher-Yates shuffle picks.
std::vector<bool> ChooseHeldOut(size_t n, size_t k, uint64_t seed) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  Rng rng(seed ^ kHoldOutSalt);
  std::vector<bool> held(n, false);
  for (size_t i = 0; i < k; ++i) {
    std::swap(order[i], order[i + rng.Below(n - i)]);
    held[order[i]] = true;
  }
  return held;
}

// Code points, not bytes: the text is valid UTF-8 (the CSV reader checks),
// so every byte that is not a continuation byte starts one character.
int64_t CountChars(const std::string& s) {
  int64_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

bool HasNonAscii(const std::string& s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  }
  return false;
}

}  // namespace

std::vector<Example> LoadExamples(const std::string& path, const DataConfig& spec) {
  const char delimiter = DelimiterOf(spec);
  CheckLabelRule(spec);
  DFAR_CHECK(spec.limit >= 0, "data.limit must be >= 0 (0 = all rows), got ", spec.limit);
  CsvTable table = ReadCsv(path, delimiter);
  const Columns cols = ResolveColumns(table, spec);
  DFAR_CHECK(!table.rows.empty(), path, ": has a header but no data rows");

  std::vector<Example> examples;
  for (size_t row : SubsetRows(table.rows.size(), spec.limit, spec.subset))
    examples.push_back(MapRow(table, row, cols, spec));
  return examples;
}

std::vector<size_t> SubsetRows(size_t total, int64_t limit, const std::string& subset) {
  DFAR_CHECK(subset == "head" || subset == "stride", "subset must be head or stride, got '", subset, "'");
  DFAR_CHECK(limit >= 0, "limit must be >= 0 (0 = all rows), got ", limit);
  const size_t n = limit > 0 && static_cast<size_t>(limit) < total ? static_cast<size_t>(limit) : total;
  std::vector<size_t> rows(n);
  for (size_t i = 0; i < n; ++i) rows[i] = subset == "head" || n == total ? i : i * total / n;
  return rows;
}

TrainValSplit HoldOutValidation(const std::vector<Example>& all, double fraction, uint64_t seed) {
  DFAR_CHECK(fraction >= 0.0 && fraction <= 1.0, "validation fraction must be in [0, 1], got ", fraction);
  const size_t n = all.size();
  const auto k = static_cast<size_t>(std::llround(fraction * static_cast<double>(n)));
  const std::vector<bool> held = ChooseHeldOut(n, k, seed);

  TrainValSplit split;
  split.train.reserve(n - k);
  split.val.reserve(k);
  for (size_t i = 0; i < n; ++i) (held[i] ? split.val : split.train).push_back(all[i]);
  return split;
}

DatasetStats ComputeStats(const std::vector<Example>& examples) {
  DatasetStats s;
  int64_t statement_chars = 0;
  int64_t reason_chars = 0;
  for (const Example& ex : examples) {
    ++s.rows;
    s.ethical += ex.label == kEthical;
    s.unethical += ex.label == kUnethical;
    s.with_reason += !ex.reason.empty();
    s.non_ascii += HasNonAscii(ex.statement) || HasNonAscii(ex.reason);
    const int64_t reason = CountChars(ex.reason);
    statement_chars += CountChars(ex.statement);
    reason_chars += reason;
    s.max_reason_chars = std::max(s.max_reason_chars, reason);
  }
  if (s.rows > 0) {
    s.mean_statement_chars = static_cast<double>(statement_chars) / static_cast<double>(s.rows);
    s.mean_reason_chars = static_cast<double>(reason_chars) / static_cast<double>(s.rows);
  }
  return s;
}

}  // namespace dfar
