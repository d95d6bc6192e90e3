// The `dfar` entry point: registers subcommands and maps errors to exit codes.
//   0  success
//   1  dfar::Error (bad input, failed run): the message says what and where
//   2  command-line usage errors (CLI11)
//   3  unexpected internal errors

#include <cstdio>
#include <exception>

#include "commands.h"
#include "dfar/core/error.h"
#include "dfar/core/logging.h"
#include "dfar/runtime/thread_policy.h"

int main(int argc, char** argv) {
  dfar::RememberCommandLine(argc, argv);  // For the wait-policy re-execution (runtime/thread_policy.h).
  CLI::App app{"dfar: distributed L / L+R fine-tuning and evaluation of LLMs on DFAR"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "show help for every subcommand");
  dfar::cli::RegisterDataCommand(app);
  dfar::cli::RegisterTokenizerCommand(app);
  dfar::cli::RegisterConfigCommand(app);
  dfar::cli::RegisterTrainCommand(app);
  dfar::cli::RegisterCkptCommand(app);
  dfar::cli::RegisterGenerateCommand(app);
  dfar::cli::RegisterEvalCommand(app);
  dfar::cli::RegisterVersionCommand(app);
  try {
    dfar::InitConsoleLogging();
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const dfar::Error& e) {
    std::fprintf(stderr, "dfar: error: %s\n", e.message().c_str());
    // Also into this rank's log file: under mpirun a dying rank's stderr can be lost.
    dfar::LogError("{} (raised at {})", e.message(), e.origin());
    dfar::ShutdownLogging();
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dfar: internal error: %s\n", e.what());
    dfar::LogCritical("internal error: {}", e.what());
    dfar::ShutdownLogging();
    return 3;
  }
  return 0;
}
