#include "run_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "dfar/core/error.h"

namespace dfar {
namespace fs = std::filesystem;

void PrepareRunDir(const std::string& dir, bool resume, bool overwrite, Communicator& comm) {
  DFAR_CHECK(!dir.empty(), "run.dir is empty");
  DFAR_CHECK(!(resume && overwrite), "--resume and --overwrite exclude each other");
  const bool exists = fs::exists(dir) && !fs::is_empty(dir);
  // Every rank decides from the same (shared) path; rank 0 alone deletes.
  if (exists && !resume && !overwrite) {
    DFAR_THROW("run dir '", dir, "' already exists; pass --resume to continue it or --overwrite to replace it");
  }
  comm.Barrier();
  if (exists && overwrite && comm.rank() == 0) fs::remove_all(dir);
  comm.Barrier();
  std::error_code ec;
  fs::create_directories(fs::path(dir) / "logs", ec);
  DFAR_CHECK(!ec, "cannot create run dir '", dir, "': ", ec.message());
  const std::string probe = (fs::path(dir) / ("logs/.write-test-" + std::to_string(comm.rank()))).string();
  FILE* f = std::fopen(probe.c_str(), "w");
  DFAR_CHECK(f != nullptr, "run dir '", dir, "' is not writable: ", std::strerror(errno));
  std::fclose(f);
  fs::remove(probe);
}

}  // namespace dfar
