#include "harness.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <thread>

#include "dfar/build_info.h"

namespace dfar::bench {

std::string Args::Get(const std::string& key, const std::string& fallback) const {
  auto it = kv.find(key);
  return it == kv.end() ? fallback : it->second;
}

double Args::GetDouble(const std::string& key, double fallback) const {
  auto it = kv.find(key);
  return it == kv.end() ? fallback : std::stod(it->second);
}

int64_t Args::GetInt(const std::string& key, int64_t fallback) const {
  auto it = kv.find(key);
  return it == kv.end() ? fallback : std::stoll(it->second);
}

Args ParseArgs(int argc, char** argv, const std::string& usage) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--help" || s == "-h") {
      std::printf("%s\n", usage.c_str());
      std::exit(0);
    }
    if (s.rfind("--", 0) != 0) {
      std::fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", argv[0], s.c_str());
      std::exit(2);
    }
    s = s.substr(2);
    std::string key = s, value = "1";
    if (auto eq = s.find('='); eq != std::string::npos) {
      key = s.substr(0, eq);
      value = s.substr(eq + 1);
    } else if (key != "quick" && i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
      value = argv[++i];
    }
    if (usage.find("--" + key) == std::string::npos) {  // Every flag a benchmark reads is in its usage.
      std::fprintf(stderr, "%s: unknown flag '--%s' (see --help)\n", argv[0], key.c_str());
      std::exit(2);
    }
    if (key == "json") {
      a.json_path = value;
    } else if (key == "quick") {
      a.quick = true;
    } else {
      a.kv[key] = value;
    }
  }
  return a;
}

Report::Report(std::string bench, const Args& args, int rank, int ranks)
    : bench_(std::move(bench)), args_(args), rank_(rank), ranks_(ranks) {
  meta_["bench"] = bench_;
  meta_["host"] = HostName();
  meta_["cpu"] = CpuModel();
  meta_["cpu_flags"] = CpuFlags();
  meta_["hardware_threads"] = std::thread::hardware_concurrency();
  const char* omp = std::getenv("OMP_NUM_THREADS");
  meta_["omp_num_threads"] = omp ? omp : "unset";
  const char* wait = std::getenv("OMP_WAIT_POLICY");
  meta_["omp_wait_policy"] = wait ? wait : "unset";
  meta_["ranks"] = ranks_;
  meta_["libtorch"] = "not linked (this benchmark times MPI only)";  // AddTorchMeta names the version.
  meta_["dfar"] = DFAR_VERSION;
  meta_["build"] = std::string(DFAR_BUILD_TYPE) + ", " + DFAR_CXX_COMPILER;
  const char* commit = std::getenv("DFAR_GIT_COMMIT");
  meta_["git_commit"] = commit ? commit : "unknown";
}

void Report::Meta(const std::string& key, const std::string& value) {
  meta_[key] = value;
}

void Report::PrintMeta() const {
  for (const auto& [k, v] : meta_.items())
    std::printf("# %-18s %s\n", k.c_str(), v.is_string() ? v.get<std::string>().c_str() : v.dump().c_str());
}

void Report::Begin(std::vector<Column> columns) {
  columns_ = std::move(columns);
  if (rank_ != 0) return;
  if (!begun_) PrintMeta();
  begun_ = true;
  std::printf("#\n#");
  for (const auto& c : columns_) std::printf(" %*s", c.width, c.name.c_str());
  std::printf(" %7s\n", "correct");
  std::fflush(stdout);
}

void Report::Row(const std::vector<Cell>& cells, bool correct) {
  if (!correct) ++failures_;
  if (rank_ != 0) return;
  nlohmann::json row = nlohmann::json::object();
  std::printf(" ");
  for (size_t i = 0; i < cells.size(); ++i) {
    const Column c = i < columns_.size() ? columns_[i] : Column{"col" + std::to_string(i)};
    if (const auto* x = std::get_if<int64_t>(&cells[i])) {
      std::printf(" %*lld", c.width, static_cast<long long>(*x));
      row[c.name] = *x;
    } else if (const auto* d = std::get_if<double>(&cells[i])) {
      std::printf(" %*.*f", c.width, c.precision, *d);
      row[c.name] = *d;
    } else {
      const auto& s = std::get<std::string>(cells[i]);
      std::printf(" %*s", c.width, s.c_str());
      row[c.name] = s;
    }
  }
  std::printf(" %7s\n", correct ? "OK" : "FAIL");
  std::fflush(stdout);
  row["correct"] = correct;
  rows_.push_back(row);
}

void Report::Summary(const std::string& key, const nlohmann::json& value) {
  summary_[key] = value;
}

void Report::Note(const std::string& text) {
  notes_.push_back(text);
  if (rank_ == 0) std::printf("# %s\n", text.c_str());
}

int Report::Finish() {
  if (rank_ == 0) {
    if (!begun_) PrintMeta();
    for (const auto& [k, v] : summary_.items()) std::printf("# summary %-24s %s\n", k.c_str(), v.dump().c_str());
    std::printf("# %s: %d case(s) failed their correctness check\n", bench_.c_str(), failures_);
    if (!args_.json_path.empty()) {
      nlohmann::json columns = nlohmann::json::array();
      for (const auto& c : columns_) columns.push_back(c.name);
      columns.push_back("correct");
      nlohmann::json j = {{"bench", bench_},     {"meta", meta_},   {"columns", columns},   {"rows", rows_},
                          {"summary", summary_}, {"notes", notes_}, {"failures", failures_}};
      const std::string tmp = args_.json_path + ".tmp";
      {
        std::ofstream out(tmp);
        out << j.dump(2) << "\n";
        if (!out) {
          std::fprintf(stderr, "%s: cannot write %s\n", bench_.c_str(), tmp.c_str());
          return 1;
        }
      }
      std::rename(tmp.c_str(), args_.json_path.c_str());
    }
    std::fflush(stdout);
  }
  return failures_ == 0 ? 0 : 1;
}

int Main(int argc, char** argv, const std::string& usage, int (*body)(const Args&)) {
  const Args args = ParseArgs(argc, argv, usage);
  try {
    return body(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 2;
  }
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double Median(std::vector<double> xs) {
  if (xs.empty()) return 0;
  std::sort(xs.begin(), xs.end());
  const size_t n = xs.size();
  return n % 2 ? xs[n / 2] : 0.5 * (xs[n / 2 - 1] + xs[n / 2]);
}

std::string HostName() {
  char buf[256] = {0};
  gethostname(buf, sizeof(buf) - 1);
  return buf;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

// The flags that decide which figures hold where: bf16 is fast only with
// avx512_bf16 or amx_bf16; fp32 GEMMs differ between avx2 and avx512f.
std::string CpuFlags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::string out;
    for (const char* flag : {" avx2 ", " avx512f ", " avx512_bf16 ", " amx_bf16 "}) {
      if ((line + " ").find(flag) == std::string::npos) continue;
      if (!out.empty()) out += " ";
      out += std::string(flag).substr(1, std::string(flag).size() - 2);
    }
    return out.empty() ? "none of avx2/avx512f/avx512_bf16/amx_bf16" : out;
  }
  return "unknown";
}

}  // namespace dfar::bench
