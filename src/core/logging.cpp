#include "dfar/core/logging.h"

// The only file of dfar that includes spdlog (see dfar/core/logging.h).
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <spdlog/version.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "dfar/core/error.h"

namespace dfar {
namespace {

spdlog::level::level_enum ParseLevel(const std::string& text) {
  const auto level = spdlog::level::from_str(text);
  // spdlog maps unknown names to "off"; treat that as a user error instead.
  DFAR_CHECK(level != spdlog::level::off || text == "off", "unknown log level '", text,
             "' (use trace, debug, info, warn or error)");
  return level;
}

std::string EffectiveLevel(const std::string& configured) {
  const char* env = std::getenv("DFAR_LOG_LEVEL");
  return env != nullptr && *env != '\0' ? std::string(env) : configured;
}

std::string RankLogPath(const std::string& run_dir, int rank) {
  char name[32];
  std::snprintf(name, sizeof(name), "rank-%05d.log", rank);
  return (std::filesystem::path(run_dir) / "logs" / name).string();
}

spdlog::level::level_enum ToSpdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return spdlog::level::trace;
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
    case LogLevel::kCritical:
      return spdlog::level::critical;
  }
  return spdlog::level::info;
}

}  // namespace

// After ShutdownLogging there is no default logger: lines are dropped.
bool LogEnabled(LogLevel level) {
  spdlog::logger* logger = spdlog::default_logger_raw();
  return logger != nullptr && logger->should_log(ToSpdlog(level));
}

void LogWrite(LogLevel level, std::string_view line) {
  if (spdlog::logger* logger = spdlog::default_logger_raw()) {
    logger->log(ToSpdlog(level), spdlog::string_view_t(line.data(), line.size()));
  }
}

void FlushLog() {
  if (spdlog::logger* logger = spdlog::default_logger_raw()) logger->flush();
}

void ShutdownLogging() {
  spdlog::shutdown();
}

std::string LoggingBackendVersion() {
  return Format("spdlog {}.{}.{} (fmt {}.{}.{})", SPDLOG_VER_MAJOR, SPDLOG_VER_MINOR, SPDLOG_VER_PATCH,
                FMT_VERSION / 10000, FMT_VERSION / 100 % 100, FMT_VERSION % 100);
}

void InitLogging(const LogOptions& options) {
  std::vector<spdlog::sink_ptr> sinks;
  if (options.rank == 0 || options.all_ranks_console) {
    sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  }
  if (!options.run_dir.empty()) {
    const std::string path = RankLogPath(options.run_dir, options.rank);
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    DFAR_CHECK(!ec, "cannot create log directory for '", path, "': ", ec.message());
    try {
      sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(path));
    } catch (const spdlog::spdlog_ex& e) {
      DFAR_THROW("cannot open log file '", path, "': ", e.what());
    }
  }
  auto logger = std::make_shared<spdlog::logger>("dfar", sinks.begin(), sinks.end());
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [r" + std::to_string(options.rank) + "] [%^%l%$] %v");
  logger->set_level(ParseLevel(EffectiveLevel(options.level)));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

void InitConsoleLogging(const std::string& level) {
  LogOptions options;
  options.level = level;
  InitLogging(options);
}

}  // namespace dfar
