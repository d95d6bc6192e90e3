#include "dfar/core/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "dfar/core/error.h"

namespace dfar {
namespace {

FileSystem& DefaultFileSystem() {
  static FileSystem fs;
  return fs;
}

std::atomic<FileSystem*> g_current{nullptr};

int WriteAll(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    done += static_cast<size_t>(n);
  }
  return 0;
}

}  // namespace

int FileSystem::WriteFile(const std::string& path, const std::string& bytes, bool sync) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  int err = WriteAll(fd, bytes);
  if (err == 0 && sync && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  return err;
}

int FileSystem::Rename(const std::string& from, const std::string& to) {
  return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

int FileSystem::Sync(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return errno;
  const int err = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

FileSystem& CurrentFileSystem() {
  FileSystem* fs = g_current.load();
  return fs != nullptr ? *fs : DefaultFileSystem();
}

ScopedFileSystem::ScopedFileSystem(FileSystem* fs) : previous_(g_current.exchange(fs)) {}
ScopedFileSystem::~ScopedFileSystem() {
  g_current.store(previous_);
}

std::string TryWriteFileAtomic(const std::string& path, const std::string& bytes, bool durable) {
  const std::string tmp = path + ".tmp";
  FileSystem& fs = CurrentFileSystem();
  if (const int err = fs.WriteFile(tmp, bytes, durable)) {
    std::remove(tmp.c_str());
    return "cannot write '" + tmp + "': " + std::strerror(err);
  }
  if (const int err = fs.Rename(tmp, path)) {
    std::remove(tmp.c_str());
    return "cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(err);
  }
  return "";
}

void WriteFileAtomic(const std::string& path, const std::string& bytes) {
  const std::string error = TryWriteFileAtomic(path, bytes, /*durable=*/true);
  DFAR_CHECK(error.empty(), error);
}

void WriteFileDurably(const std::string& path, const std::string& bytes) {
  const int err = CurrentFileSystem().WriteFile(path, bytes, /*sync=*/true);
  DFAR_CHECK(err == 0, "cannot write '", path, "': ", std::strerror(err));
}

void RenameOrThrow(const std::string& from, const std::string& to) {
  const int err = CurrentFileSystem().Rename(from, to);
  DFAR_CHECK(err == 0, "cannot rename '", from, "' to '", to, "': ", std::strerror(err));
}

void FsyncFile(const std::string& path) {
  const int err = CurrentFileSystem().Sync(path, /*directory=*/false);
  DFAR_CHECK(err == 0, "fsync of '", path, "' failed: ", std::strerror(err));
}

void FsyncDir(const std::string& path) {
  const int err = CurrentFileSystem().Sync(path, /*directory=*/true);
  DFAR_CHECK(err == 0, "fsync of directory '", path, "' failed: ", std::strerror(err));
}

}  // namespace dfar
