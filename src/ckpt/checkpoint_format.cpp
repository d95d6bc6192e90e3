// The index schema and the file-level primitives of the commit protocol.
//
// The index is untrusted input: it may be truncated, edited by hand or
// forged. ParseIndex therefore checks every field's type and range before
// use, and bounds every size it derives by int64 arithmetic that cannot
// overflow, so that later reads never allocate more than the tensor's
// numel * element size (and the reader bounds numel by the shard files).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>

#include "checkpoint_internal.h"
#include "dfar/core/error.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "dfar checkpoints store little-endian bytes and checksum them as such; big-endian hosts are not supported"
#endif

namespace dfar {

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : global_shape) n *= d;  // Bounded by ParseIndex / the writer's checks.
  return n;
}

namespace ckpt {
namespace {

using nlohmann::json;

bool AllDigits(const std::string& s, size_t from, size_t to) {
  if (to <= from || to - from > 18) return false;
  for (size_t i = from; i < to; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

int64_t GetInt(const json& obj, const char* key, const std::string& where) {
  const auto it = obj.find(key);
  DFAR_CHECK(it != obj.end(), where, ": missing '", key, "'");
  DFAR_CHECK(it->is_number_integer(), where, ": '", key, "' is not an integer");
  if (it->is_number_unsigned()) {
    const uint64_t u = it->get<uint64_t>();
    DFAR_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), where, ": '", key, "' is out of range");
    return static_cast<int64_t>(u);
  }
  return it->get<int64_t>();
}

const std::string& GetString(const json& obj, const char* key, const std::string& where) {
  const auto it = obj.find(key);
  DFAR_CHECK(it != obj.end(), where, ": missing '", key, "'");
  DFAR_CHECK(it->is_string(), where, ": '", key, "' is not a string");
  return it->get_ref<const std::string&>();
}

const json& GetField(const json& obj, const char* key, json::value_t type, const char* type_name,
                     const std::string& where) {
  const auto it = obj.find(key);
  DFAR_CHECK(it != obj.end(), where, ": missing '", key, "'");
  DFAR_CHECK(it->type() == type, where, ": '", key, "' is not ", type_name);
  return *it;
}

// A shard file name must stay inside the checkpoint directory.
void CheckShardFileName(const std::string& file, const std::string& where) {
  const bool ok = !file.empty() && file.size() <= 255 && file != "." && file != ".." &&
                  file.find('/') == std::string::npos && file.find('\0') == std::string::npos;
  DFAR_CHECK(ok, where, ": shard file name '", file, "' is not a plain file name");
}

void CheckHeader(const json& index, const std::string& where) {
  DFAR_CHECK(index.is_object(), where, ": not a JSON object");
  const auto format = index.find("format");
  DFAR_CHECK(format != index.end() && format->is_string() && *format == kCheckpointFormat, where,
             ": 'format' is not \"", kCheckpointFormat, "\" (not a dfar checkpoint index)");
  const int64_t version = GetInt(index, "version", where);
  DFAR_CHECK(version <= kCheckpointVersion, where, ": index version ", version, " is newer than this dfar supports (",
             kCheckpointVersion, "); upgrade dfar to read it");
  DFAR_CHECK(version >= 1, where, ": invalid index version ", version);
}

ChunkInfo ParseChunk(const json& c, int64_t numel, int world_size, const std::string& where) {
  DFAR_CHECK(c.is_object(), where, ": not an object");
  ChunkInfo info;
  info.file = GetString(c, "file", where);
  CheckShardFileName(info.file, where);
  info.dataset = GetString(c, "dataset", where);
  DFAR_CHECK(!info.dataset.empty() && info.dataset[0] == '/' && info.dataset.size() <= 4096 &&
                 info.dataset.find('\0') == std::string::npos,
             where, ": 'dataset' is not an absolute HDF5 path");
  info.begin = GetInt(c, "begin", where);
  info.end = GetInt(c, "end", where);
  DFAR_CHECK(0 <= info.begin && info.begin < info.end && info.end <= numel, where, ": range [", info.begin, ", ",
             info.end, ") is empty or outside the tensor's ", numel, " elements");
  const int64_t crc = GetInt(c, "crc32c", where);
  DFAR_CHECK(crc >= 0 && crc <= 0xFFFFFFFFll, where, ": 'crc32c' is not a 32-bit value");
  info.crc32c = static_cast<uint32_t>(crc);
  const int64_t rank = GetInt(c, "rank", where);
  DFAR_CHECK(rank >= 0 && rank < world_size, where, ": rank ", rank, " is outside the world of ", world_size);
  info.writer_rank = static_cast<int>(rank);
  return info;
}

std::string ChunkLabel(const ChunkInfo& c) {
  return detail::StrCat("[", c.begin, ", ", c.end, ") from rank ", c.writer_rank, " (", c.file, ")");
}

// The chunks, sorted by begin, must cover [0, numel) with no gap or overlap.
void CheckTiling(std::vector<ChunkInfo>& chunks, int64_t numel, const std::string& where) {
  std::sort(chunks.begin(), chunks.end(), [](const ChunkInfo& a, const ChunkInfo& b) {
    return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
  });
  int64_t covered = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const ChunkInfo& c = chunks[i];
    DFAR_CHECK(c.begin >= covered, where, ": chunk ", ChunkLabel(c), " overlaps chunk ", ChunkLabel(chunks[i - 1]));
    DFAR_CHECK(c.begin == covered, where, ": elements [", covered, ", ", c.begin, ") are in no chunk");
    covered = c.end;
  }
  DFAR_CHECK(covered == numel, where, ": elements [", covered, ", ", numel, ") are in no chunk");
}

TensorInfo ParseTensor(const std::string& name, const json& t, int world_size, const std::string& where) {
  DFAR_CHECK(!name.empty(), where, ": a tensor has an empty name");
  DFAR_CHECK(t.is_object(), where, ": not an object");
  TensorInfo info;
  info.name = name;
  const json& shape = GetField(t, "shape", json::value_t::array, "an array", where);
  DFAR_CHECK(shape.size() <= 64, where, ": 'shape' has ", shape.size(), " dims");
  for (const json& d : shape) {
    DFAR_CHECK(d.is_number_integer(), where, ": 'shape' holds a non-integer");
    DFAR_CHECK(
        !d.is_number_unsigned() || d.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
        where, ": 'shape' dim out of range");
    info.global_shape.push_back(d.is_number_unsigned() ? static_cast<int64_t>(d.get<uint64_t>()) : d.get<int64_t>());
  }
  const std::string& dtype = GetString(t, "dtype", where);
  DFAR_CHECK(DTypeFromName(dtype, &info.dtype), where, ": unknown dtype '", dtype, "'");
  const int64_t numel = CheckedNumel(info.global_shape, DTypeSize(info.dtype), where);
  const json& chunks = GetField(t, "chunks", json::value_t::array, "an array", where);
  for (size_t i = 0; i < chunks.size(); ++i) {
    info.chunks.push_back(ParseChunk(chunks[i], numel, world_size, detail::StrCat(where, " chunk ", i)));
  }
  CheckTiling(info.chunks, numel, where);
  return info;
}

// JSON nesting depth of `text` (brackets outside strings). The index is
// shallow; refusing deep nesting keeps recursive JSON code off the stack
// limit whatever the input.
bool NestingWithin(const std::string& text, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (const char ch : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (ch == '\\') {
        escaped = true;
      } else if (ch == '"') {
        in_string = false;
      }
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      if (++depth > max_depth) return false;
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
  }
  return true;
}

}  // namespace

std::string StepDirName(int64_t step) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "step-%08" PRId64, step);
  return buf;
}

bool ParseStepDirName(const std::string& name, int64_t* step) {
  if (name.compare(0, 5, "step-") != 0 || !AllDigits(name, 5, name.size())) return false;
  *step = std::stoll(name.substr(5));
  return true;
}

bool ParseTmpDirName(const std::string& name, int64_t* step) {
  for (const std::string suffix : {".replaced.tmp", ".tmp"}) {
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        ParseStepDirName(name.substr(0, name.size() - suffix.size()), step)) {
      return true;
    }
  }
  return false;
}

std::string ShardFileName(int rank, int world_size) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "shard-%05d-of-%05d.h5", rank, world_size);
  return buf;
}

std::string EscapeTensorName(const std::string& name) {
  const bool all_dots = name.find_first_not_of('.') == std::string::npos;
  std::string out;
  for (const char ch : name) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '%' || ch == '/' || u < 0x20 || u == 0x7F || (all_dots && ch == '.')) {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", u);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out;
}

std::string DatasetPath(const std::string& name, int64_t begin) {
  return "/t/" + EscapeTensorName(name) + "/" + std::to_string(begin);
}

bool DTypeFromName(const std::string& name, DType* out) {
  for (DType d : {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64, DType::kUInt8, DType::kBFloat16,
                  DType::kFloat16}) {
    if (name == DTypeName(d)) {
      *out = d;
      return true;
    }
  }
  return false;
}

int64_t CheckedNumel(const std::vector<int64_t>& shape, size_t elem_size, const std::string& what) {
  const int64_t limit = std::numeric_limits<int64_t>::max() / static_cast<int64_t>(elem_size);
  int64_t n = 1;
  for (int64_t d : shape) {
    DFAR_CHECK(d >= 0, what, ": negative dimension ", d);
    DFAR_CHECK(d == 0 || n <= limit / d, what, ": shape is too large (numel * element size overflows int64)");
    n *= d;
  }
  return n;
}

std::map<std::string, TensorInfo> ParseIndex(const nlohmann::json& index, const std::string& where) {
  CheckHeader(index, where);
  DFAR_CHECK(GetInt(index, "step", where) >= 0, where, ": negative 'step'");
  const int64_t world_size = GetInt(index, "world_size", where);
  DFAR_CHECK(world_size >= 1 && world_size <= kMaxWorldSize, where, ": 'world_size' ", world_size, " is out of range");
  GetField(index, "meta", json::value_t::object, "an object", where);
  const json& ranks = GetField(index, "ranks", json::value_t::array, "an array", where);
  DFAR_CHECK(static_cast<int64_t>(ranks.size()) == world_size, where, ": 'ranks' has ", ranks.size(),
             " entries for a world of ", world_size);
  const json& tensors = GetField(index, "tensors", json::value_t::object, "an object", where);
  std::map<std::string, TensorInfo> out;
  for (const auto& [name, t] : tensors.items()) {
    out.emplace(name, ParseTensor(name, t, static_cast<int>(world_size), where + ": tensor '" + name + "'"));
  }
  return out;
}

nlohmann::json ReadIndexFile(const std::string& path) {
  const int64_t size = FileSize(path);
  DFAR_CHECK(size >= 0, "cannot read ", path, " (no index: not a complete checkpoint)");
  DFAR_CHECK(size <= kMaxIndexBytes, path, " is ", size, " bytes, larger than any index dfar writes");
  std::ifstream in(path, std::ios::binary);
  DFAR_CHECK(in.good(), "cannot open ", path);
  std::string text(static_cast<size_t>(size), '\0');
  in.read(text.data(), size);
  DFAR_CHECK(in.gcount() == size, "cannot read ", path, " (short read)");
  return ParseIndexText(text, path);
}

nlohmann::json ParseIndexText(const std::string& text, const std::string& where) {
  DFAR_CHECK(static_cast<int64_t>(text.size()) <= kMaxIndexBytes, where, " is ", text.size(),
             " bytes, larger than any index dfar writes");
  DFAR_CHECK(NestingWithin(text, kMaxIndexDepth), where, " nests JSON deeper than ", kMaxIndexDepth,
             " levels (not an index dfar writes)");
  json index = json::parse(text, nullptr, /*allow_exceptions=*/false);
  DFAR_CHECK(!index.is_discarded(), where, " is not valid JSON (truncated or damaged index)");
  return index;
}

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

int64_t FileSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  return static_cast<int64_t>(st.st_size);
}

}  // namespace ckpt
}  // namespace dfar
