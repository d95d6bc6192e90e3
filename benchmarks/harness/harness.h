// dfar::bench — the shared harness of every C++ benchmark.
//
// Owns the output format (nccl-tests style): `#` metadata lines (host, CPU,
// threads, ranks, library versions, git commit), a `#` header naming the
// columns, then one fixed-width row per case whose last column says whether
// that case's correctness check passed. `--json FILE` writes the same data
// (plus a `summary` object of headline figures) for benchmarks/report.py.
// Finish() returns the process exit code: non-zero if any row failed.
//
// Only rank 0 prints and writes; every rank may call Row() (others no-op).
// Thread-safety: one Report per process, used from the main thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace dfar::bench {

struct Column {
  std::string name;
  int width = 12;
  int precision = 3;  // Digits after the point for doubles.
};

using Cell = std::variant<int64_t, double, std::string>;

struct Args {
  std::string json_path;                  // --json FILE
  bool quick = false;                     // --quick: fewer sizes/iterations (smoke runs).
  std::map<std::string, std::string> kv;  // --key=value or --key value for anything else.
  std::string Get(const std::string& key, const std::string& fallback) const;
  double GetDouble(const std::string& key, double fallback) const;
  int64_t GetInt(const std::string& key, int64_t fallback) const;
};

// Parses argv; `--help` prints `usage` and exits 0; a malformed flag, or one
// that `usage` does not mention, exits 2 with a message naming it.
Args ParseArgs(int argc, char** argv, const std::string& usage);

class Report {
 public:
  // `rank` 0 prints; `ranks` is the world size recorded in the metadata.
  Report(std::string bench, const Args& args, int rank = 0, int ranks = 1);

  void Meta(const std::string& key, const std::string& value);
  // Prints the metadata block and the column header (once).
  void Begin(std::vector<Column> columns);
  // One case; `correct` fills the last column ("OK" / "FAIL").
  void Row(const std::vector<Cell>& cells, bool correct);
  // A headline figure for the summary (e.g. a ratio and its goal).
  void Summary(const std::string& key, const nlohmann::json& value);
  void Note(const std::string& text);  // A `#` line after the rows.

  // Prints the summary, writes --json, returns 0 if every row passed, else 1.
  int Finish();
  bool all_correct() const { return failures_ == 0; }

 private:
  void PrintMeta() const;
  std::string bench_;
  Args args_;
  int rank_, ranks_;
  nlohmann::json meta_ = nlohmann::json::object();
  nlohmann::json rows_ = nlohmann::json::array();
  nlohmann::json summary_ = nlohmann::json::object();
  nlohmann::json notes_ = nlohmann::json::array();
  std::vector<Column> columns_;
  bool begun_ = false;
  int failures_ = 0;
};

// The shared main(): parses argv (`usage` for --help), runs `body`, and turns
// an exception into a message naming the benchmark and exit status 2.
int Main(int argc, char** argv, const std::string& usage, int (*body)(const Args&));

// Wall-clock seconds since an arbitrary origin (steady clock).
double Now();

// Median of a sample (copied; empty -> 0).
double Median(std::vector<double> xs);

// Host facts for the metadata block.
std::string HostName();
std::string CpuModel();
// avx2 / avx512f / avx512_bf16 / amx_bf16, those present (from /proc/cpuinfo).
std::string CpuFlags();

}  // namespace dfar::bench
