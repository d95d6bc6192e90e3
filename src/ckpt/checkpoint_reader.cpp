// Reading checkpoints: the resharding reader, FindLatestCheckpoint, verify.
//
// Trust: index.json and the shard files are untrusted bytes. Before a chunk
// is read, its dataset is checked against the index (1-D, same length and
// element type, contiguous storage lying inside the file), so a forged index
// cannot make dfar allocate more than the shards really hold, and a
// truncated shard fails with a message rather than with fill values.
//
// Checksums cover whole chunks, while a resharding read may touch only part
// of one. The first partial touch reads the whole chunk once, checks it and
// copies the part needed; the reader then remembers the chunk as verified
// and later partial reads fetch just the overlap by hyperslab. The trade-off:
// one full-chunk read per chunk per reader (ZeRO slices of a rank are read
// mostly whole anyway), and a file changed after its first verification is
// not re-checked by that reader; committed checkpoints are immutable, and
// VerifyCheckpoint re-reads everything.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <utility>

#include "checkpoint_internal.h"
#include "dfar/ckpt/checkpoint.h"
#include "dfar/core/error.h"
#include "dfar/core/world.h"
#include "hdf5_util.h"

namespace dfar {
namespace {

using ckpt::H5Handle;
using ckpt::H5Where;

int ProcessRank() {
  try {
    return DiscoverWorld().rank;
  } catch (const std::exception&) {
    return -1;  // Only used in messages.
  }
}

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08" PRIx32, v);
  return buf;
}

std::string RangeText(int64_t begin, int64_t end) {
  return detail::StrCat("[", begin, ", ", end, ")");
}

// The shard files of one checkpoint directory, each opened (and its root
// attributes checked) once. Callers hold an H5Lock.
class ShardFiles {
 public:
  ShardFiles(std::string dir, int rank) : dir_(std::move(dir)), rank_(rank) {}

  std::string Path(const std::string& file) const { return dir_ + "/" + file; }
  H5Where Where(const std::string& file) const { return {Path(file), rank_}; }
  int64_t Size(const std::string& file) const { return sizes_.at(file); }

  hid_t Get(const std::string& file) {
    const auto it = open_.find(file);
    if (it != open_.end()) return it->second.get();
    const auto failed = failed_.find(file);
    if (failed != failed_.end()) DFAR_THROW(failed->second);
    try {
      return OpenShard(file);
    } catch (const Error& e) {
      failed_[file] = e.message();
      throw;
    }
  }

  void CloseAll() { open_.clear(); }

 private:
  hid_t OpenShard(const std::string& file) {
    const std::string path = Path(file);
    const int64_t size = ckpt::FileSize(path);
    DFAR_CHECK(size >= 0, "shard ", path, " is missing");
    const H5Where where = Where(file);
    const H5Handle fapl = ckpt::FileAccessPlist(where);
    const hid_t raw = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
    DFAR_CHECK(raw >= 0, "cannot open shard ", path, " (", size,
               " bytes) as HDF5; the file is truncated or damaged: ", ckpt::H5ErrorText());
    H5Handle handle(raw, H5Fclose);
    const std::string format = ckpt::ReadStringAttr(raw, "format", 256, where);
    DFAR_CHECK(format == ckpt::kShardFormat, path, " is not a dfar checkpoint shard (format '", format, "')");
    const int64_t version = ckpt::ReadInt64Attr(raw, "version", where);
    DFAR_CHECK(version <= kCheckpointVersion, "shard ", path, " has version ", version,
               ", newer than this dfar supports (", kCheckpointVersion, ")");
    sizes_[file] = size;
    return open_.emplace(file, std::move(handle)).first->second.get();
  }

  std::string dir_;
  int rank_;
  std::map<std::string, H5Handle> open_;
  std::map<std::string, int64_t> sizes_;
  std::map<std::string, std::string> failed_;  // A broken file is tried once.
};

// Opens a chunk's dataset and checks it against the index.
H5Handle OpenChunk(ShardFiles& shards, const TensorInfo& t, const ChunkInfo& c) {
  const H5Where where = shards.Where(c.file);
  const hid_t file = shards.Get(c.file);
  const hid_t raw = H5Dopen2(file, c.dataset.c_str(), H5P_DEFAULT);
  DFAR_CHECK(raw >= 0, "dataset ", c.dataset, " is missing from shard ", where.file,
             " (truncated or damaged file?): ", ckpt::H5ErrorText());
  H5Handle dset(raw, H5Dclose);
  const int64_t n = c.end - c.begin;
  const size_t elem = DTypeSize(t.dtype);
  H5Handle space(DFAR_H5_CHECK(H5Dget_space(raw), where), H5Sclose);
  hsize_t dims[1] = {0};
  DFAR_CHECK(DFAR_H5_CHECK(H5Sget_simple_extent_ndims(space.get()), where) == 1, "dataset ", c.dataset, " in ",
             where.file, " is not 1-D");
  DFAR_H5_CHECK(H5Sget_simple_extent_dims(space.get(), dims, nullptr), where);
  DFAR_CHECK(dims[0] == static_cast<hsize_t>(n), "dataset ", c.dataset, " in ", where.file, " has ", dims[0],
             " elements but the index says ", n);
  H5Handle type(DFAR_H5_CHECK(H5Dget_type(raw), where), H5Tclose);
  const hid_t want = ckpt::FileType(t.dtype);
  const bool same_type = H5Tget_class(type.get()) == H5Tget_class(want) && H5Tget_size(type.get()) == elem &&
                         (H5Tget_class(want) != H5T_INTEGER || H5Tget_sign(type.get()) == H5Tget_sign(want));
  DFAR_CHECK(same_type, "dataset ", c.dataset, " in ", where.file, " does not hold ", DTypeName(t.dtype),
             " elements (dtype mismatch with the index)");
  H5Handle dcpl(DFAR_H5_CHECK(H5Dget_create_plist(raw), where), H5Pclose);
  DFAR_CHECK(H5Pget_layout(dcpl.get()) == H5D_CONTIGUOUS && H5Pget_external_count(dcpl.get()) == 0, "dataset ",
             c.dataset, " in ", where.file, " is not stored contiguously inside the file (not dfar format version 1)");
  const hsize_t stored = H5Dget_storage_size(raw);
  const haddr_t offset = H5Dget_offset(raw);
  const auto bytes = static_cast<hsize_t>(n) * elem;
  DFAR_CHECK(stored == bytes && offset != HADDR_UNDEF, "dataset ", c.dataset, " in ", where.file, " has ", stored,
             " of its ", bytes, " bytes stored (incomplete write or damaged file)");
  DFAR_CHECK(offset + bytes <= static_cast<hsize_t>(shards.Size(c.file)), "dataset ", c.dataset,
             " extends past the end of shard ", where.file, " (", shards.Size(c.file),
             " bytes): the file is truncated");
  return dset;
}

// Reads `count` elements from `offset` of a 1-D dataset into out.
void ReadSlab(hid_t dset, DType dtype, int64_t offset, int64_t count, void* out, const H5Where& where) {
  const hsize_t start[1] = {static_cast<hsize_t>(offset)};
  const hsize_t n[1] = {static_cast<hsize_t>(count)};
  H5Handle mem(DFAR_H5_CHECK(H5Screate_simple(1, n, nullptr), where), H5Sclose);
  H5Handle file_space(DFAR_H5_CHECK(H5Dget_space(dset), where), H5Sclose);
  DFAR_H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, n, nullptr), where);
  DFAR_H5_CHECK(H5Dread(dset, ckpt::MemType(dtype), mem.get(), file_space.get(), H5P_DEFAULT, out), where);
}

// Reads a whole chunk into out and checks its CRC32C.
void ReadChecked(hid_t dset, const TensorInfo& t, const ChunkInfo& c, void* out, const H5Where& where) {
  const int64_t n = c.end - c.begin;
  ReadSlab(dset, t.dtype, 0, n, out, where);
  const uint32_t crc = Crc32c(out, static_cast<size_t>(n) * DTypeSize(t.dtype));
  DFAR_CHECK(crc == c.crc32c, "checksum mismatch in dataset ", c.dataset, " of shard ", where.file, " (index says ",
             Hex(c.crc32c), ", data gives ", Hex(crc), "): the shard is corrupted");
}

}  // namespace

struct CheckpointReader::State {
  State(std::string dir, int rank) : shards(std::move(dir), rank) {}
  ~State() {
    ckpt::H5Lock lock;
    shards.CloseAll();
  }
  ShardFiles shards;
  std::set<std::pair<std::string, std::string>> verified;  // (file, dataset) whose CRC matched.
};

CheckpointReader CheckpointReader::Open(const std::string& dir) {
  DFAR_CHECK(ckpt::IsDirectory(dir), "checkpoint directory ", dir, " does not exist");
  CheckpointReader reader;
  reader.dir_ = dir;
  const std::string path = dir + "/" + ckpt::kIndexFile;
  reader.index_ = ckpt::ReadIndexFile(path);
  reader.tensors_ = ckpt::ParseIndex(reader.index_, path);
  std::set<std::string> checked;
  for (const auto& [name, t] : reader.tensors_) {
    for (const ChunkInfo& c : t.chunks) {
      if (!checked.insert(c.file).second) continue;
      DFAR_CHECK(ckpt::IsRegularFile(dir + "/" + c.file), "checkpoint ", dir, ": missing shard ", c.file,
                 " (holds tensor '", name, "')");
    }
  }
  reader.state_ = std::make_shared<State>(dir, ProcessRank());
  return reader;
}

int64_t CheckpointReader::step() const {
  return index_.at("step").get<int64_t>();
}

int CheckpointReader::world_size() const {
  return index_.at("world_size").get<int>();
}

const TensorInfo& CheckpointReader::Tensor(const std::string& name) const {
  const auto it = tensors_.find(name);
  DFAR_CHECK(it != tensors_.end(), "checkpoint ", dir_, " has no tensor '", name, "'");
  return it->second;
}

void CheckpointReader::Read(const std::string& name, int64_t begin, int64_t end, void* out) const {
  const TensorInfo& t = Tensor(name);
  const int64_t numel = t.numel();
  DFAR_CHECK(0 <= begin && begin <= end && end <= numel, "checkpoint ", dir_, ": range ", RangeText(begin, end),
             " is outside tensor '", name, "' of ", numel, " elements");
  if (begin == end) return;
  DFAR_CHECK(out != nullptr && state_ != nullptr, "CheckpointReader::Read: no output buffer or reader not opened");
  const size_t elem = DTypeSize(t.dtype);
  ckpt::H5Lock lock;
  // The first chunk that ends after `begin`; chunks are sorted and tile.
  auto it = std::upper_bound(t.chunks.begin(), t.chunks.end(), begin,
                             [](int64_t b, const ChunkInfo& c) { return b < c.end; });
  for (; it != t.chunks.end() && it->begin < end; ++it) {
    const ChunkInfo& c = *it;
    const int64_t lo = std::max(begin, c.begin), hi = std::min(end, c.end);
    uint8_t* dst = static_cast<uint8_t*>(out) + static_cast<size_t>(lo - begin) * elem;
    const H5Where where = state_->shards.Where(c.file);
    try {
      H5Handle dset = OpenChunk(state_->shards, t, c);
      const auto key = std::make_pair(c.file, c.dataset);
      if (lo == c.begin && hi == c.end) {
        ReadChecked(dset.get(), t, c, dst, where);
        state_->verified.insert(key);
      } else if (state_->verified.count(key) != 0) {
        ReadSlab(dset.get(), t.dtype, lo - c.begin, hi - lo, dst, where);
      } else {
        // Bounded: OpenChunk checked that the chunk's bytes lie inside the file.
        std::vector<uint8_t> whole(static_cast<size_t>(c.end - c.begin) * elem);
        ReadChecked(dset.get(), t, c, whole.data(), where);
        std::memcpy(dst, whole.data() + static_cast<size_t>(lo - c.begin) * elem, static_cast<size_t>(hi - lo) * elem);
        state_->verified.insert(key);
      }
    } catch (const Error& e) {
      DFAR_THROW("checkpoint ", dir_, ": tensor '", name, "' elements ", RangeText(c.begin, c.end), " in shard ",
                 c.file, ": ", e.message());
    }
  }
}

std::vector<uint8_t> CheckpointReader::ReadAll(const std::string& name) const {
  const TensorInfo& t = Tensor(name);
  DFAR_CHECK(state_ != nullptr, "CheckpointReader::ReadAll: reader not opened");
  {
    // Check every chunk against its shard before allocating: this bounds
    // numel by what the files really hold, whatever the index claims.
    ckpt::H5Lock lock;
    for (const ChunkInfo& c : t.chunks) {
      try {
        OpenChunk(state_->shards, t, c);
      } catch (const Error& e) {
        DFAR_THROW("checkpoint ", dir_, ": tensor '", name, "' elements ", RangeText(c.begin, c.end), " in shard ",
                   c.file, ": ", e.message());
      }
    }
  }
  std::vector<uint8_t> out(static_cast<size_t>(t.numel()) * DTypeSize(t.dtype));
  Read(name, 0, t.numel(), out.data());
  return out;
}

std::string FindLatestCheckpoint(const std::string& root) {
  namespace fs = std::filesystem;
  const auto complete = [&](const std::string& name) {
    int64_t step = 0;
    return ckpt::ParseStepDirName(name, &step) && ckpt::IsRegularFile(root + "/" + name + "/" + ckpt::kIndexFile);
  };
  // `latest` is a hint; a damaged or stale one falls through to the scan.
  std::ifstream in(root + "/" + ckpt::kLatestFile, std::ios::binary);
  if (in.good()) {
    std::string text(64, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(in.gcount()));
    const size_t nl = text.find('\n');
    if (nl != std::string::npos) text.resize(nl);
    if (complete(text)) return root + "/" + text;
  }
  std::error_code ec;
  int64_t best = -1;
  std::string best_name;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    int64_t step = 0;
    if (ckpt::ParseStepDirName(name, &step) && step > best && complete(name)) {
      best = step;
      best_name = name;
    }
  }
  return best_name.empty() ? "" : root + "/" + best_name;
}

std::vector<std::string> VerifyCheckpoint(const std::string& dir) {
  std::map<std::string, TensorInfo> tensors;
  try {
    DFAR_CHECK(ckpt::IsDirectory(dir), "checkpoint directory ", dir, " does not exist");
    const std::string path = dir + "/" + ckpt::kIndexFile;
    tensors = ckpt::ParseIndex(ckpt::ReadIndexFile(path), path);
  } catch (const std::exception& e) {
    return {e.what()};
  }
  std::vector<std::string> problems;
  ckpt::H5Lock lock;
  ShardFiles shards(dir, ProcessRank());
  for (const auto& [name, t] : tensors) {
    for (const ChunkInfo& c : t.chunks) {
      try {
        H5Handle dset = OpenChunk(shards, t, c);
        std::vector<uint8_t> buf(static_cast<size_t>(c.end - c.begin) * DTypeSize(t.dtype));
        ReadChecked(dset.get(), t, c, buf.data(), shards.Where(c.file));
      } catch (const std::exception& e) {
        problems.push_back(detail::StrCat("tensor '", name, "' elements ", RangeText(c.begin, c.end), " in shard ",
                                          c.file, ": ", e.what()));
      }
    }
  }
  return problems;
}

}  // namespace dfar
