// Internal to src/ckpt: checked HDF5 calls, RAII handles, dtype mapping.
//
// Every HDF5 call in dfar goes through DFAR_H5_CHECK, which turns a negative
// return into a dfar::Error naming the call, the file, the rank and the most
// specific messages of HDF5's error stack. HDF5's own stack printing is off
// (dfar never writes to stderr behind the caller's back).
// Thread-safety: hold an H5Lock around every HDF5 use. HDF5 may be built
// without thread safety, and the async writer's thread shares the library
// with the training thread; the lock serialises them (recursive, so helpers
// may nest).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>

#include "dfar/comm/communicator.h"
#include "dfar/core/error.h"

namespace dfar::ckpt {

// Where an HDF5 call happens, for error messages.
struct H5Where {
  std::string file;
  int rank = -1;  // -1: unknown (a reader outside a launched job).
};

// "file /a/step-00000001/shard-00000-of-00002.h5 on rank 0"
std::string Describe(const H5Where& where);

// The most specific messages on the calling thread's HDF5 error stack (and
// clears it).
std::string H5ErrorText();

class H5Lock {
 public:
  H5Lock();

 private:
  std::unique_lock<std::recursive_mutex> lock_;
};

// Owns an HDF5 id and closes it. Close() reports the close's status, which
// matters for files being written (data is flushed on close).
class H5Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Handle() = default;
  H5Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  H5Handle(H5Handle&& other) noexcept : id_(other.id_), closer_(other.closer_) { other.id_ = -1; }
  H5Handle& operator=(H5Handle&& other) noexcept {
    if (this != &other) {
      Reset();
      id_ = other.id_;
      closer_ = other.closer_;
      other.id_ = -1;
    }
    return *this;
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  ~H5Handle() { Reset(); }

  hid_t get() const { return id_; }
  herr_t Close() {
    const herr_t rc = id_ >= 0 ? closer_(id_) : 0;
    id_ = -1;
    return rc;
  }
  void Reset() noexcept {
    if (id_ >= 0) closer_(id_);  // Errors ignored: used on error paths only.
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// The on-disk (little-endian) and in-memory HDF5 types of a dtype. bf16 and
// f16 are stored as uint16 (HDF5 1.10 has no bf16 type); the dataset's
// "dtype" attribute names the logical type.
hid_t FileType(DType dtype);
hid_t MemType(DType dtype);

// File access properties for every shard open/create: HDF5's file locking
// is kept where the file system supports it and skipped where it does not
// (NFS, some Lustre mounts), instead of failing the open.
H5Handle FileAccessPlist(const H5Where& where);

// Writes a scalar attribute on an object.
void WriteStringAttr(hid_t obj, const char* name, const std::string& value, const H5Where& where);
void WriteInt64Attr(hid_t obj, const char* name, int64_t value, const H5Where& where);
// Reads a fixed- or variable-length string attribute of at most max_len bytes.
std::string ReadStringAttr(hid_t obj, const char* name, size_t max_len, const H5Where& where);
int64_t ReadInt64Attr(hid_t obj, const char* name, const H5Where& where);

}  // namespace dfar::ckpt

// Evaluates an HDF5 call; throws dfar::Error naming it if it returned < 0.
// Yields the call's value (an id, a status, a count).
#define DFAR_H5_CHECK(call, where)                                                         \
  [&]() {                                                                                  \
    const auto dfar_h5_rc = (call);                                                        \
    if (dfar_h5_rc < 0) {                                                                  \
      DFAR_THROW("HDF5 call ", #call, " failed for ", ::dfar::ckpt::Describe(where), ": ", \
                 ::dfar::ckpt::H5ErrorText());                                             \
    }                                                                                      \
    return dfar_h5_rc;                                                                     \
  }()
