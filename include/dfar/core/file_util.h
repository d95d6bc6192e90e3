// The one place where dfar writes files that must never look half-written
// (checkpoint indexes and `latest`, reports, the run config, the watchdog's
// heartbeats), and the seam through which tests inject file-system faults.
//
// Every write goes through the process's current FileSystem (leveldb's Env
// idea): the default one calls POSIX; a test installs its own with
// ScopedFileSystem to fail a rename, a sync or a write at a chosen path, as a
// crash or a full disk would. Production code never installs one.
//
// Failure: the throwing functions raise dfar::Error naming the file and the
// system's reason; TryWriteFileAtomic returns that text instead (for threads
// that must not throw). A failed atomic write leaves no .tmp behind.
// Thread-safety: the functions may be called from any thread; install a
// ScopedFileSystem only while no other thread writes.
#pragma once

#include <string>

namespace dfar {

// The primitive operations, each returning 0 or an errno value.
class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // Creates or truncates `path` and writes `bytes`; fsyncs it when `sync`.
  virtual int WriteFile(const std::string& path, const std::string& bytes, bool sync);
  virtual int Rename(const std::string& from, const std::string& to);
  // fsync of a file, or of a directory (its entries: renames, creations).
  virtual int Sync(const std::string& path, bool directory);
};

// The file system every helper below uses.
FileSystem& CurrentFileSystem();

// Makes `fs` current until destruction (tests); restores the previous one.
class ScopedFileSystem {
 public:
  explicit ScopedFileSystem(FileSystem* fs);
  ~ScopedFileSystem();
  ScopedFileSystem(const ScopedFileSystem&) = delete;
  ScopedFileSystem& operator=(const ScopedFileSystem&) = delete;

 private:
  FileSystem* previous_;
};

// Writes `bytes` to "<path>.tmp", fsyncs it, then renames it over `path`, so
// a reader sees the old file or the new one, never a part. Throws.
void WriteFileAtomic(const std::string& path, const std::string& bytes);
// The same, returning "" or the error. `durable` = false skips the fsync
// (heartbeats that are rewritten every few seconds).
std::string TryWriteFileAtomic(const std::string& path, const std::string& bytes, bool durable = true);
// Writes in place and fsyncs: for files inside a staging directory that is
// renamed as a whole afterwards. Throws.
void WriteFileDurably(const std::string& path, const std::string& bytes);
void RenameOrThrow(const std::string& from, const std::string& to);
void FsyncFile(const std::string& path);
void FsyncDir(const std::string& path);

}  // namespace dfar
