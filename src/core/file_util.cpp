#include "dfar/core/file_util.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "dfar/core/error.h"

namespace dfar {

void WriteFileAtomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  DFAR_CHECK(f != nullptr, "cannot create '", tmp, "': ", std::strerror(errno));
  const bool written =
      std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  const int saved = errno;
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed) {
    std::remove(tmp.c_str());
    DFAR_THROW("cannot write '", tmp, "': ", std::strerror(written ? errno : saved));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  DFAR_CHECK(!ec, "cannot rename '", tmp, "' to '", path, "': ", ec.message());
}

}  // namespace dfar
