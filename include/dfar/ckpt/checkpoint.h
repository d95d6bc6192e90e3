// Sharded HDF5 checkpoints: format, atomic commit, resharding reads, verify.
//
// A checkpoint is a directory `<root>/step-NNNNNNNN/` holding one serial HDF5
// file per rank, `shard-RRRRR-of-NNNNN.h5`, and `index.json`, written by
// rank 0 last. Every tensor is addressed by its flattened (row-major) element
// range: a rank stores chunks [begin, end) of any tensors it owns (a whole
// parameter, or a ZeRO slice of a flat optimizer buffer). The index records,
// per tensor, its global shape and dtype and, per chunk, the shard file,
// dataset path, element range and CRC32C. Readers ask for any element range
// and get it assembled from whichever chunks overlap, by HDF5 hyperslab
// reads, so a checkpoint written by N ranks loads on any M. Format details:
// docs/checkpoint-format.md.
//
// Commit protocol (Save): write shards into `step-N.tmp/`, fsync each file,
// barrier, rank 0 writes and fsyncs index.json, renames the directory to
// `step-N/`, fsyncs the root, then atomically replaces `latest` (a small
// text file written via tmp + rename). A crash at any point leaves the
// previous checkpoint complete and `latest` pointing at it; `.tmp`
// directories are never taken as checkpoints (and are cleaned by the next
// successful save).
//
// Library code is torch-free: tensors travel as raw host buffers + DType.
// Failure: dfar::Error naming the directory, file and tensor (missing shard,
// checksum mismatch, truncated file, unknown format version, range outside
// the tensor, dtype mismatch).
// Thread-safety: Save/Load are collective and called from the training thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dfar/comm/communicator.h"

namespace dfar {

constexpr const char* kCheckpointFormat = "dfar-checkpoint";
constexpr int kCheckpointVersion = 1;

// One chunk this rank writes: elements [begin, end) of tensor `name`, whose
// full shape is `global_shape`. `bytes` holds (end - begin) elements of dtype.
struct ChunkToWrite {
  std::string name;
  std::vector<int64_t> global_shape;
  DType dtype = DType::kFloat32;
  int64_t begin = 0, end = 0;
  std::vector<uint8_t> bytes;  // Owned, so an async save can outlive the caller's tensors.
};

struct SaveRequest {
  int64_t step = 0;
  nlohmann::json meta;               // Rank 0's: config, model identity, cursor, scheduler, ...
  nlohmann::json rank_meta;          // Every rank's own (e.g. RNG state); gathered into index["ranks"].
  std::vector<ChunkToWrite> chunks;  // This rank's chunks.
};

struct SaveOptions {
  int keep_last = 0;   // Keep the newest K complete checkpoints (0 = keep all).
  bool async = false;  // Write shards in a background thread; see CheckpointWriter.
};
// Crashes and I/O errors at any point of the protocol are injected through
// the file-system seam (dfar/core/file_util.h: ScopedFileSystem): a failed
// shard fsync, index write or rename is exactly what a crash there leaves.

// Saves checkpoints under `root`. With async, Save() returns once the shard
// bytes are handed to a background writer; the commit (barrier, index,
// rename) of that checkpoint happens in the next Save() or in Wait(), on the
// calling thread, so collectives never run concurrently with training's.
// Any rank's failure makes Save()/Wait() throw the same dfar::Error on every
// rank (no rank is left waiting in a collective); the previous checkpoint
// stays the latest.
class CheckpointWriter {
 public:
  CheckpointWriter(std::string root, Communicator& comm, SaveOptions options = {});
  // Waits for and commits a pending async save (errors are logged). During
  // stack unwinding it only joins the writer thread: the save stays
  // uncommitted, since a collective there could hang.
  ~CheckpointWriter();

  // Collective. Returns the final directory (`<root>/step-NNNNNNNN`).
  std::string Save(SaveRequest request);
  // Collective: finishes a pending async save, if any.
  void Wait();
  // Seconds the caller was blocked by the last Save() (for benchmarks).
  double last_blocking_seconds() const { return last_blocking_seconds_; }

 private:
  struct Pending;
  std::string root_;
  Communicator& comm_;
  SaveOptions options_;
  std::unique_ptr<Pending> pending_;
  double last_blocking_seconds_ = 0;
};

struct ChunkInfo {
  std::string file;     // Shard file name, relative to the checkpoint dir.
  std::string dataset;  // HDF5 dataset path inside it.
  int64_t begin = 0, end = 0;
  uint32_t crc32c = 0;
  int writer_rank = 0;
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> global_shape;
  DType dtype = DType::kFloat32;
  std::vector<ChunkInfo> chunks;  // Sorted by begin; together they cover [0, numel).
  int64_t numel() const;
};

class CheckpointReader {
 public:
  // Opens `dir` (a step-N directory) and validates index.json: format name,
  // version (newer versions are refused), that every shard file exists, and
  // that each tensor's chunks tile it exactly.
  static CheckpointReader Open(const std::string& dir);

  const nlohmann::json& index() const { return index_; }
  const nlohmann::json& meta() const { return index_["meta"]; }
  int64_t step() const;
  int world_size() const;
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  bool Has(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& Tensor(const std::string& name) const;  // Throws naming the tensor.

  // Reads elements [begin, end) of `name` into out (end - begin elements of
  // the tensor's dtype), checking each touched chunk's CRC32C. A chunk read
  // only in part is read whole (and checksummed) the first time; later
  // partial reads of it through this reader (or a copy) read just the
  // overlap. Shard files stay open until the last copy of the reader goes.
  // Read may be called from several threads (HDF5 access is serialised).
  void Read(const std::string& name, int64_t begin, int64_t end, void* out) const;
  std::vector<uint8_t> ReadAll(const std::string& name) const;

 private:
  struct State;  // Open shard files and the chunks already validated/verified.
  std::string dir_;
  nlohmann::json index_;
  std::map<std::string, TensorInfo> tensors_;
  std::shared_ptr<State> state_;
};

// The newest complete checkpoint under root (via `latest`, falling back to
// scanning step-* directories that hold an index); "" if none.
std::string FindLatestCheckpoint(const std::string& root);

// Re-checks every chunk's checksum and every shard's presence. Returns the
// problems found, each naming the tensor and shard (empty = healthy).
std::vector<std::string> VerifyCheckpoint(const std::string& dir);

// CRC32C (Castagnoli): the SSE4.2 instruction where the CPU has it, else a
// slicing-by-8 table. Crc32cPortable always uses the table (tests compare both).
uint32_t Crc32c(const void* data, size_t n, uint32_t seed = 0);
uint32_t Crc32cPortable(const void* data, size_t n, uint32_t seed = 0);

}  // namespace dfar
