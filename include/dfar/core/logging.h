// Rank-aware logging on spdlog.
//
// Owns: the process-wide default logger. Rank 0 logs to the console (every
// rank with all_ranks_console), and every rank logs to
// `<run_dir>/logs/rank-NNNNN.log` once a run dir is known. The level comes from
// config and is overridden by env DFAR_LOG_LEVEL.
// Thread-safety: spdlog loggers are thread-safe; call InitLogging once per
// process from the main thread before starting worker threads.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace dfar {

struct LogOptions {
  int rank = 0;
  std::string level = "info";
  std::string run_dir;  // Empty: console only.
  bool all_ranks_console = false;
};

// (Re)configures the default logger. Throws dfar::Error if the log file
// cannot be created (the message names the path).
void InitLogging(const LogOptions& options);

// Console-only logging for commands that have no run dir (data, config, ...).
void InitConsoleLogging(const std::string& level = "warn");

}  // namespace dfar
