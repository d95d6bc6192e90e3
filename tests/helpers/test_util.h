// Helpers that several test files share: the message of an expected error,
// and a FileSystem that fails where a test says (the fault seam of
// dfar/core/file_util.h).
#pragma once

#include <gtest/gtest.h>

#include <cerrno>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "dfar/core/error.h"
#include "dfar/core/file_util.h"

namespace dfar::testing {

// The message of the dfar::Error that `fn` throws; a test failure if it
// throws nothing or something else.
inline std::string ErrorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.message();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected dfar::Error, got: " << e.what();
    return std::string("NOT A dfar::Error: ") + e.what();
  }
  ADD_FAILURE() << "expected dfar::Error";
  return "";
}

// The message of the dfar::Error that `fn` throws, or "" when it throws
// nothing (for code that may fail or succeed, but must never crash).
inline std::string ErrorOrEmpty(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.message();
  } catch (const std::exception& e) {
    return std::string("NOT A dfar::Error: ") + e.what();
  }
  return "";
}

// Fails chosen operations, as a crash, a full disk or a lost write would.
// Install with ScopedFileSystem. Thread-safe: checkpoint ranks run as
// threads in some tests, and async shard writes run in the background.
class FaultyFileSystem : public FileSystem {
 public:
  enum class Op { kWrite, kRename, kSync };
  // Fails the first `op` whose path (for a rename: the source) contains
  // `path_part`, with `err`, after running `before` on that path (e.g. to
  // truncate a file, as a process dying mid-write leaves it).
  void FailOn(Op op, std::string path_part, std::function<void(const std::string&)> before = nullptr, int err = EIO) {
    std::lock_guard<std::mutex> lock(mu_);
    faults_.push_back({op, std::move(path_part), std::move(before), err, false});
  }

  int WriteFile(const std::string& path, const std::string& bytes, bool sync) override {
    if (const int err = Check(Op::kWrite, path)) return err;
    return FileSystem::WriteFile(path, bytes, sync);
  }
  int Rename(const std::string& from, const std::string& to) override {
    if (const int err = Check(Op::kRename, from)) return err;
    return FileSystem::Rename(from, to);
  }
  int Sync(const std::string& path, bool directory) override {
    if (const int err = Check(Op::kSync, path)) return err;
    return FileSystem::Sync(path, directory);
  }

 private:
  struct Fault {
    Op op;
    std::string path_part;
    std::function<void(const std::string&)> before;
    int err;
    bool fired;
  };
  int Check(Op op, const std::string& path) {
    std::function<void(const std::string&)> before;
    int err = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (Fault& f : faults_) {
        if (f.fired || f.op != op || path.find(f.path_part) == std::string::npos) continue;
        f.fired = true;
        before = f.before;
        err = f.err;
        break;
      }
    }
    if (err != 0 && before) before(path);
    return err;
  }
  std::mutex mu_;
  std::vector<Fault> faults_;
};

}  // namespace dfar::testing
