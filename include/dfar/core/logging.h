// Rank-aware logging, with an interface that includes neither spdlog nor fmt.
//
// Owns: the process-wide logger. Rank 0 logs to the console (every rank with
// all_ranks_console), and every rank logs to `<run_dir>/logs/rank-NNNNN.log`
// once a run dir is known. The level comes from config and is overridden by
// env DFAR_LOG_LEVEL.
//
// Why its own interface: the backend is spdlog, which Debian builds against
// its fmt 9 (SPDLOG_FMT_EXTERNAL; Debian ships no bundled fmt). A torch pip
// wheel puts fmt 12 headers in torch/include/fmt, on the include path of
// every file that includes torch headers, so any such file that included
// spdlog saw fmt 12 declarations against a libfmt 9 ABI and failed to compile
// (issue 17). Bundling another fmt with spdlog would only move the clash.
// Instead only src/core/logging.cpp, in dfar_base (which never sees torch's
// include path), includes spdlog; everything else formats with dfar's own
// "{}" formatter (dfar/core/format.h) and hands the finished line over.
// tests/cli/logging_boundary.sh keeps it that way.
//
// Thread-safety: writing is thread-safe; call InitLogging once per process
// from the main thread before starting worker threads.
#pragma once

#include <string>
#include <string_view>

#include "dfar/core/format.h"

namespace dfar {

struct LogOptions {
  int rank = 0;
  std::string level = "info";
  std::string run_dir;  // Empty: console only.
  bool all_ranks_console = false;
};

// (Re)configures the logger. Throws dfar::Error if the log file cannot be
// created (the message names the path) or the level is unknown.
void InitLogging(const LogOptions& options);

// Console-only logging for commands that have no run dir (data, config, ...).
void InitConsoleLogging(const std::string& level = "warn");

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kCritical };

// Whether a line at level would be written (lets callers skip costly work).
bool LogEnabled(LogLevel level);
// Writes one finished line at level to every sink.
void LogWrite(LogLevel level, std::string_view line);
// Flushes every sink.
void FlushLog();
// Flushes and closes every sink (before the process exits).
void ShutdownLogging();
// "spdlog 1.10.0 (fmt 9.1.0)": the backend that this build logs through.
std::string LoggingBackendVersion();

template <typename... Args>
void LogAt(LogLevel level, std::string_view pattern, const Args&... args) {
  if (LogEnabled(level)) LogWrite(level, Format(pattern, args...));
}
template <typename... Args>
void LogDebug(std::string_view pattern, const Args&... args) {
  LogAt(LogLevel::kDebug, pattern, args...);
}
template <typename... Args>
void LogInfo(std::string_view pattern, const Args&... args) {
  LogAt(LogLevel::kInfo, pattern, args...);
}
template <typename... Args>
void LogWarn(std::string_view pattern, const Args&... args) {
  LogAt(LogLevel::kWarn, pattern, args...);
}
template <typename... Args>
void LogError(std::string_view pattern, const Args&... args) {
  LogAt(LogLevel::kError, pattern, args...);
}
template <typename... Args>
void LogCritical(std::string_view pattern, const Args&... args) {
  LogAt(LogLevel::kCritical, pattern, args...);
}

}  // namespace dfar
