// The checkpoint writer: shard files, the collective commit, retention.
//
// Order of the commit matters; each step relies on the one before:
//  1. Prepare (collective): rank 0 creates `step-N.tmp/` (clearing a stale
//     one of the same step), and all ranks agree it worked before anyone
//     writes, so no rank writes into a directory rank 0 is still cleaning.
//  2. Each rank writes its shard and fsyncs it (in a background thread when
//     async). A fault injected at that fsync (the file-system seam) is a
//     crash after the shard was written.
//  3. Gather (collective): every rank sends its chunk records, rank_meta and
//     error, if any. This is the barrier of the protocol: past it, every
//     shard is durable. Any rank's error makes every rank throw the same
//     message, so no rank is left waiting in a collective.
//  4. Rank 0 builds the index, validates it with the reader's own checks
//     (chunks must tile every tensor), writes and fsyncs index.json, fsyncs
//     the tmp dir, renames to `step-N/` (a fault injected at that rename is
//     a crash before the commit), fsyncs the
//     root, then replaces `latest` by tmp + rename + fsync. index.json is
//     written inside the tmp dir, so a directory without `.tmp` that holds
//     an index is complete by construction.
//  5. Rank 0's outcome is shared (collective) so every rank throws or
//     returns together. Retention and stale-tmp cleanup run after the commit
//     and only log on failure: the checkpoint is already safe.
#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <thread>
#include <utility>

#include "checkpoint_internal.h"
#include "dfar/ckpt/checkpoint.h"
#include "dfar/core/error.h"
#include "dfar/core/file_util.h"
#include "dfar/core/logging.h"
#include "hdf5_util.h"

namespace dfar {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string ExceptionText(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

// Dumps JSON that came from the caller (meta may hold invalid UTF-8).
std::string DumpLenient(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Local checks of one chunk, before anything is written.
void CheckChunk(const ChunkToWrite& c, int rank) {
  const std::string what = detail::StrCat("rank ", rank, ": tensor '", c.name, "'");
  DFAR_CHECK(!c.name.empty(), "rank ", rank, ": a chunk has an empty tensor name");
  const size_t elem = DTypeSize(c.dtype);
  const int64_t numel = ckpt::CheckedNumel(c.global_shape, elem, what);
  DFAR_CHECK(0 <= c.begin && c.begin <= c.end && c.end <= numel, what, ": chunk [", c.begin, ", ", c.end,
             ") is outside its ", numel, " elements");
  const auto want = static_cast<size_t>(c.end - c.begin) * elem;
  DFAR_CHECK(c.bytes.size() == want, what, ": chunk [", c.begin, ", ", c.end, ") holds ", c.bytes.size(),
             " bytes, expected ", want);
}

json ShapeJson(const std::vector<int64_t>& shape) {
  json s = json::array();
  for (int64_t d : shape) s.push_back(d);
  return s;
}

// Writes one chunk as dataset `path` with its descriptive attributes.
void WriteDataset(hid_t file, hid_t lcpl, const ChunkToWrite& c, const std::string& path, uint32_t crc,
                  const ckpt::H5Where& where) {
  using ckpt::H5Handle;
  const hsize_t dims[1] = {static_cast<hsize_t>(c.end - c.begin)};
  H5Handle space(DFAR_H5_CHECK(H5Screate_simple(1, dims, nullptr), where), H5Sclose);
  H5Handle dcpl(DFAR_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE), where), H5Pclose);
  DFAR_H5_CHECK(H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS), where);
  DFAR_H5_CHECK(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), where);  // Every byte is written below.
  H5Handle dset(
      DFAR_H5_CHECK(H5Dcreate2(file, path.c_str(), ckpt::FileType(c.dtype), space.get(), lcpl, dcpl.get(), H5P_DEFAULT),
                    where),
      H5Dclose);
  DFAR_H5_CHECK(H5Dwrite(dset.get(), ckpt::MemType(c.dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, c.bytes.data()), where);
  ckpt::WriteStringAttr(dset.get(), "dtype", DTypeName(c.dtype), where);
  ckpt::WriteStringAttr(dset.get(), "tensor", c.name, where);
  ckpt::WriteInt64Attr(dset.get(), "begin", c.begin, where);
  ckpt::WriteInt64Attr(dset.get(), "end", c.end, where);
  ckpt::WriteInt64Attr(dset.get(), "crc32c", crc, where);
  DFAR_H5_CHECK(dset.Close(), where);
}

// Starts the kernel's writeback of a shard file every ~64 MB written, so the
// disk writes while the next chunks are checksummed and copied, and the final
// fsync finds little left to do (measured in docs/benchmarks.md). Linux
// only; elsewhere, and if the HDF5 driver exposes no descriptor, a no-op.
class WritebackStarter {
 public:
  explicit WritebackStarter(hid_t file) {
    void* handle = nullptr;
    if (H5Fget_vfd_handle(file, H5P_DEFAULT, &handle) >= 0 && handle != nullptr) fd_ = *static_cast<int*>(handle);
  }
  void Wrote(size_t bytes) {
    pending_ += bytes;
    if (pending_ < kEvery || fd_ < 0) return;
#if defined(__linux__)
    ::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);  // Advisory: errors surface in the final fsync.
#endif
    pending_ = 0;
  }

 private:
  static constexpr size_t kEvery = size_t{64} << 20;
  int fd_ = -1;
  size_t pending_ = 0;
};

struct ShardSpec {
  std::string path, file;
  int rank = 0, world_size = 1;
  int64_t step = 0;
};

// Writes this rank's shard file, fsyncs it and returns its chunk records.
json WriteShard(const ShardSpec& spec, const std::vector<ChunkToWrite>& chunks) {
  std::set<std::pair<std::string, int64_t>> seen;
  for (const ChunkToWrite& c : chunks) {
    CheckChunk(c, spec.rank);
    DFAR_CHECK(c.begin == c.end || seen.emplace(c.name, c.begin).second, "rank ", spec.rank, ": tensor '", c.name,
               "' has two chunks starting at ", c.begin);
  }
  const ckpt::H5Where where{spec.path, spec.rank};
  json records = json::array();
  {
    ckpt::H5Lock lock;
    using ckpt::H5Handle;
    const H5Handle fapl = ckpt::FileAccessPlist(where);
    H5Handle file(DFAR_H5_CHECK(H5Fcreate(spec.path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.get()), where), H5Fclose);
    ckpt::WriteStringAttr(file.get(), "format", ckpt::kShardFormat, where);
    ckpt::WriteInt64Attr(file.get(), "version", kCheckpointVersion, where);
    ckpt::WriteInt64Attr(file.get(), "rank", spec.rank, where);
    ckpt::WriteInt64Attr(file.get(), "world_size", spec.world_size, where);
    ckpt::WriteInt64Attr(file.get(), "step", spec.step, where);
    H5Handle lcpl(DFAR_H5_CHECK(H5Pcreate(H5P_LINK_CREATE), where), H5Pclose);
    DFAR_H5_CHECK(H5Pset_create_intermediate_group(lcpl.get(), 1), where);
    WritebackStarter writeback(file.get());
    for (const ChunkToWrite& c : chunks) {
      json r = {{"name", c.name},
                {"shape", ShapeJson(c.global_shape)},
                {"dtype", DTypeName(c.dtype)},
                {"begin", c.begin},
                {"end", c.end}};
      if (c.end > c.begin) {  // An empty chunk only declares the tensor.
        const uint32_t crc = Crc32c(c.bytes.data(), c.bytes.size());
        const std::string dataset = ckpt::DatasetPath(c.name, c.begin);
        WriteDataset(file.get(), lcpl.get(), c, dataset, crc, where);
        writeback.Wrote(c.bytes.size());
        r["crc32c"] = crc;
        r["dataset"] = dataset;
        r["file"] = spec.file;
      }
      records.push_back(std::move(r));
    }
    DFAR_H5_CHECK(H5Fflush(file.get(), H5F_SCOPE_LOCAL), where);
    DFAR_H5_CHECK(file.Close(), where);
  }
  FsyncFile(spec.path);
  return records;
}

// Builds the index from every rank's gathered status (rank order).
json BuildIndex(int64_t step, json meta, const std::vector<json>& all) {
  json tensors = json::object();
  json ranks = json::array();
  for (size_t r = 0; r < all.size(); ++r) {
    ranks.push_back(all[r].at("rank_meta"));
    for (const json& c : all[r].at("chunks")) {
      const std::string& name = c.at("name").get_ref<const std::string&>();
      json& t = tensors[name];
      if (t.is_null()) {
        t = {{"shape", c.at("shape")}, {"dtype", c.at("dtype")}, {"chunks", json::array()}};
      }
      DFAR_CHECK(t["shape"] == c.at("shape") && t["dtype"] == c.at("dtype"), "tensor '", name, "': rank ", r,
                 " writes shape ", c.at("shape").dump(), " ", c.at("dtype").dump(), " but another rank wrote shape ",
                 t["shape"].dump(), " ", t["dtype"].dump());
      if (c.at("end").get<int64_t>() == c.at("begin").get<int64_t>()) continue;
      t["chunks"].push_back({{"file", c.at("file")},
                             {"dataset", c.at("dataset")},
                             {"begin", c.at("begin")},
                             {"end", c.at("end")},
                             {"crc32c", c.at("crc32c")},
                             {"rank", static_cast<int>(r)}});
    }
  }
  for (auto& [name, t] : tensors.items()) {
    std::sort(t["chunks"].begin(), t["chunks"].end(),
              [](const json& a, const json& b) { return a.at("begin").get<int64_t>() < b.at("begin").get<int64_t>(); });
  }
  return {{"format", kCheckpointFormat},
          {"version", kCheckpointVersion},
          {"step", step},
          {"world_size", static_cast<int>(all.size())},
          {"meta", meta.is_null() ? json::object() : std::move(meta)},
          {"ranks", std::move(ranks)},
          {"tensors", std::move(tensors)}};
}

// Complete checkpoints under root, newest (highest step) first.
std::vector<int64_t> CompleteSteps(const std::string& root) {
  std::vector<int64_t> steps;
  std::error_code ec;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    int64_t step = 0;
    const std::string name = it->path().filename().string();
    if (ckpt::ParseStepDirName(name, &step) && ckpt::IsRegularFile(root + "/" + name + "/" + ckpt::kIndexFile)) {
      steps.push_back(step);
    }
  }
  std::sort(steps.rbegin(), steps.rend());
  return steps;
}

// Deletes a complete checkpoint so that it never looks complete while half
// deleted: the index goes first (and that is made durable).
void DeleteCheckpoint(const std::string& dir) {
  const std::string index = dir + "/" + ckpt::kIndexFile;
  DFAR_CHECK(::remove(index.c_str()) == 0, "cannot remove ", index);
  FsyncDir(dir);
  fs::remove_all(dir);
}

// Keeps the newest `keep` complete checkpoints and always `committed`.
void ApplyRetention(const std::string& root, int keep, int64_t committed) {
  if (keep <= 0) return;
  const std::vector<int64_t> steps = CompleteSteps(root);
  for (size_t i = static_cast<size_t>(keep); i < steps.size(); ++i) {
    if (steps[i] == committed) continue;
    DeleteCheckpoint(root + "/" + ckpt::StepDirName(steps[i]));
  }
}

// Removes tmp dirs of saves that did not complete, up to the current step.
void RemoveStaleTmp(const std::string& root, int64_t current) {
  std::vector<std::string> stale;
  std::error_code ec;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    int64_t step = 0;
    const std::string name = it->path().filename().string();
    if (ckpt::ParseTmpDirName(name, &step) && step <= current && it->is_directory(ec)) stale.push_back(name);
  }
  for (const std::string& name : stale) fs::remove_all(root + "/" + name);
}

}  // namespace

struct CheckpointWriter::Pending {
  ~Pending() {
    if (thread.joinable()) thread.join();
  }
  int64_t step = 0;
  std::string tmp_dir, final_dir;
  ShardSpec shard;
  json meta, rank_meta;
  std::thread thread;
  json chunks;               // Set by the shard writer...
  std::exception_ptr error;  // ...or this.
};

namespace {

// Runs step 2 of the protocol; never throws (errors go to the pending save).
template <typename PendingT>
void RunShardWrite(PendingT* p, std::vector<ChunkToWrite> chunks) {
  try {
    p->chunks = WriteShard(p->shard, chunks);
    chunks.clear();
    chunks.shrink_to_fit();  // Release the snapshot as soon as it is on disk.
  } catch (...) {
    p->error = std::current_exception();
  }
}

// Every rank contributes `mine` (which holds "error": "" when fine). Throws on
// every rank, with every failing rank's message, if any rank failed.
std::vector<json> GatherOrThrow(Communicator& comm, const json& mine, int64_t step, const std::string& root,
                                const char* phase) {
  std::string payload;
  try {
    payload = mine.dump();
  } catch (const json::exception& e) {
    payload = DumpLenient(
        {{"step", step}, {"error", std::string("rank_meta or a tensor name is not valid UTF-8 JSON: ") + e.what()}});
  }
  const std::vector<std::string> raw = comm.AllGatherBytes(payload);
  std::vector<json> all;
  std::string problems;
  for (size_t r = 0; r < raw.size(); ++r) {
    json status = json::parse(raw[r], nullptr, /*allow_exceptions=*/false);
    std::string error;
    if (!status.is_object() || !status.contains("error") || !status["error"].is_string()) {
      error = "sent an unreadable status";
    } else if (!status["error"].get_ref<const std::string&>().empty()) {
      error = status["error"].get<std::string>();
    } else if (status.value("step", int64_t{-1}) != step) {
      error = detail::StrCat("saves step ", status.value("step", int64_t{-1}), ", not ", step);
    }
    if (!error.empty()) problems += detail::StrCat(problems.empty() ? "" : "; ", "rank ", r, ": ", error);
    all.push_back(std::move(status));
  }
  DFAR_CHECK(problems.empty(), "checkpoint step ", step, " under ", root, ": ", phase, " failed: ", problems);
  return all;
}

// Step 4, on rank 0: index, rename, latest. Throws on any failure.
void CommitOnRoot(const std::string& root, int64_t step, const std::string& tmp_dir, const std::string& final_dir,
                  json meta, const std::vector<json>& all) {
  const json index = BuildIndex(step, std::move(meta), all);
  ckpt::ParseIndex(index, "the index of " + final_dir);  // The reader's checks, before anything is published.
  WriteFileDurably(tmp_dir + "/" + ckpt::kIndexFile, index.dump(1) + "\n");
  FsyncDir(tmp_dir);
  std::string replaced;
  if (ckpt::IsDirectory(final_dir)) {
    // Re-saving a step: move the old one aside (a .tmp name, so it is never
    // taken as a checkpoint) and delete it once the new one is in place.
    replaced = final_dir + ".replaced.tmp";
    fs::remove_all(replaced);
    RenameOrThrow(final_dir, replaced);
  }
  RenameOrThrow(tmp_dir, final_dir);
  FsyncDir(root);
  const std::string latest = root + "/" + ckpt::kLatestFile;
  WriteFileAtomic(latest, ckpt::StepDirName(step) + "\n");
  FsyncDir(root);
}

// After a commit, on rank 0: retention and stale tmp dirs. Failures are
// logged, not thrown: the new checkpoint is already complete.
void CleanUpAfterCommit(const std::string& root, int keep_last, int64_t step) {
  try {
    ApplyRetention(root, keep_last, step);
    RemoveStaleTmp(root, step);
  } catch (const std::exception& e) {
    LogWarn("checkpoint cleanup under {} after step {}: {}", root, step, e.what());
  }
}

}  // namespace

CheckpointWriter::CheckpointWriter(std::string root, Communicator& comm, SaveOptions options)
    : root_(std::move(root)), comm_(comm), options_(std::move(options)) {
  DFAR_CHECK(!root_.empty(), "checkpoint root directory is empty");
  DFAR_CHECK(options_.keep_last >= 0, "keep_last must be >= 0, got ", options_.keep_last);
}

CheckpointWriter::~CheckpointWriter() {
  if (!pending_) return;
  if (std::uncaught_exceptions() > 0) {
    // Unwinding: other ranks may not be, so a collective here could hang.
    // Leave the save uncommitted (its .tmp dir is cleaned by a later save).
    LogWarn("checkpoint step {} under {} was not committed: writer destroyed during an exception", pending_->step,
            root_);
    pending_.reset();
    return;
  }
  try {
    Wait();
  } catch (const std::exception& e) {
    LogError("checkpoint: {}", e.what());
  }
}

std::string CheckpointWriter::Save(SaveRequest request) {
  const auto start = Clock::now();
  if (pending_) Wait();
  const int rank = comm_.rank(), world = comm_.size();
  auto p = std::make_unique<Pending>();
  p->step = request.step;
  p->final_dir = root_ + "/" + ckpt::StepDirName(request.step);
  p->tmp_dir = p->final_dir + ".tmp";
  p->shard.file = ckpt::ShardFileName(rank, world);
  p->shard.path = p->tmp_dir + "/" + p->shard.file;
  p->shard.rank = rank;
  p->shard.world_size = world;
  p->shard.step = request.step;
  p->rank_meta = std::move(request.rank_meta);
  // Step 1: prepare the tmp dir.
  std::string error;
  try {
    DFAR_CHECK(request.step >= 0 && request.step <= ckpt::kMaxStep, "step ", request.step, " is out of range [0, ",
               ckpt::kMaxStep, "]");
    if (rank == 0) {
      DFAR_CHECK(request.meta.is_null() || request.meta.is_object(), "SaveRequest::meta must be a JSON object");
      p->meta = std::move(request.meta);
      fs::create_directories(root_);
      fs::remove_all(p->tmp_dir);
      fs::create_directory(p->tmp_dir);
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  GatherOrThrow(comm_, {{"step", request.step}, {"error", error}}, request.step, root_, "preparing the directory");
  // Step 2: write the shard, here or in the background.
  if (options_.async) {
    Pending* raw = p.get();
    raw->thread =
        std::thread([raw, chunks = std::move(request.chunks)]() mutable { RunShardWrite(raw, std::move(chunks)); });
    pending_ = std::move(p);
  } else {
    RunShardWrite(p.get(), std::move(request.chunks));
    pending_ = std::move(p);
    Wait();
  }
  last_blocking_seconds_ = std::chrono::duration<double>(Clock::now() - start).count();
  return root_ + "/" + ckpt::StepDirName(request.step);
}

void CheckpointWriter::Wait() {
  if (!pending_) return;
  std::unique_ptr<Pending> p = std::move(pending_);
  if (p->thread.joinable()) p->thread.join();
  // Step 3: gather every rank's records (the protocol's barrier).
  const std::string error = p->error ? ExceptionText(p->error) : "";
  const json mine = {{"step", p->step},
                     {"error", error},
                     {"chunks", error.empty() ? p->chunks : json::array()},
                     {"rank_meta", p->rank_meta}};
  const std::vector<json> all = GatherOrThrow(comm_, mine, p->step, root_, "writing the shards");
  // Step 4: rank 0 commits.
  std::string commit_error;
  if (comm_.rank() == 0) {
    try {
      CommitOnRoot(root_, p->step, p->tmp_dir, p->final_dir, std::move(p->meta), all);
    } catch (const std::exception& e) {
      commit_error = e.what();
    }
  }
  // Step 5: everyone learns rank 0's outcome.
  const std::vector<std::string> outcome = comm_.AllGatherBytes(commit_error);
  DFAR_CHECK(outcome[0].empty(), "checkpoint step ", p->step, " under ", root_, " was not committed: ", outcome[0]);
  if (comm_.rank() == 0) CleanUpAfterCommit(root_, options_.keep_last, p->step);
}

}  // namespace dfar
