#include "dfar/weights/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "dfar/core/error.h"
#include "dfar/weights/gguf.h"  // HalfToFloat, BFloat16ToFloat

namespace dfar {
namespace {

using nlohmann::json;
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

size_t DtypeBytes(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL") return 1;
  return 0;
}

// Checks one header entry and returns its parsed form.
SafetensorInfo ParseEntry(const std::string& path, const std::string& name, const json& e, uint64_t data_bytes) {
  DFAR_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"), path,
             ": tensor '", name, "': header entry needs dtype, shape and data_offsets");
  SafetensorInfo info;
  info.name = name;
  info.file = path;
  info.dtype = e["dtype"].is_string() ? e["dtype"].get<std::string>() : "";
  const size_t elem = DtypeBytes(info.dtype);
  DFAR_CHECK(elem > 0, path, ": tensor '", name, "': unknown dtype '", info.dtype, "'");
  DFAR_CHECK(e["shape"].is_array() && e["data_offsets"].is_array() && e["data_offsets"].size() == 2, path, ": tensor '",
             name, "': malformed shape or data_offsets");
  uint64_t count = 1;
  for (const auto& d : e["shape"]) {
    DFAR_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), path, ": tensor '", name,
               "': shape entries must be non-negative integers");
    const uint64_t dim = d.get<uint64_t>();
    DFAR_CHECK(dim == 0 || count <= data_bytes / dim, path, ": tensor '", name, "': shape is larger than the file");
    count *= dim;
    info.shape.push_back(static_cast<int64_t>(dim));
  }
  const auto& off = e["data_offsets"];
  DFAR_CHECK(off[0].is_number_unsigned() && off[1].is_number_unsigned(), path, ": tensor '", name,
             "': data_offsets must be non-negative integers");
  info.begin = off[0].get<uint64_t>();
  info.end = off[1].get<uint64_t>();
  DFAR_CHECK(info.begin <= info.end && info.end <= data_bytes, path, ": tensor '", name, "': bytes [", info.begin, ", ",
             info.end, ") lie outside the data section of ", data_bytes, " bytes (truncated file?)");
  DFAR_CHECK(info.end - info.begin == count * elem, path, ": tensor '", name, "': ", info.end - info.begin,
             " bytes stored but shape and dtype need ", count * elem);
  return info;
}

}  // namespace

std::shared_ptr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY);
  DFAR_CHECK(fd >= 0, "cannot open safetensors file '", path, "': ", std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ > 0) {
    void* m = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    DFAR_CHECK(m != MAP_FAILED, "cannot map '", path, "': ", std::strerror(errno));
    f->map_ = static_cast<const uint8_t*>(m);
    f->mapped_ = true;
  } else {
    ::close(fd);
  }
  f->Parse();
  return f;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::FromBytes(const std::string& name, std::string bytes) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = name;
  f->owned_ = std::move(bytes);
  f->map_ = reinterpret_cast<const uint8_t*>(f->owned_.data());
  f->size_ = f->owned_.size();
  f->Parse();
  return f;
}

void SafetensorsFile::Parse() {
  const std::string& path = path_;
  DFAR_CHECK(size_ >= 8, path, ": truncated: ", size_, " bytes, too short for the 8-byte header length");
  uint64_t header_len = 0;
  std::memcpy(&header_len, map_, 8);
  DFAR_CHECK(header_len <= kMaxHeaderBytes && header_len <= size_ - 8, path, ": header length ", header_len,
             " exceeds the file size (", size_, " bytes) or the 100 MB limit: truncated or not safetensors");
  json header;
  try {
    header = json::parse(map_ + 8, map_ + 8 + header_len);
  } catch (const json::exception& e) {
    DFAR_THROW(path, ": header is not valid JSON: ", e.what());
  }
  DFAR_CHECK(header.is_object(), path, ": header must be a JSON object");
  data_start_ = 8 + header_len;
  const uint64_t data_bytes = size_ - data_start_;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (entry.is_object())
        for (const auto& [k, v] : entry.items()) metadata_[k] = v.is_string() ? v.get<std::string>() : v.dump();
      continue;
    }
    tensors_[name] = ParseEntry(path, name, entry, data_bytes);
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(map_), size_);
}

const uint8_t* SafetensorsFile::Data(const SafetensorInfo& info) const {
  return map_ + data_start_ + info.begin;
}

std::vector<float> SafetensorsFile::ToFloat(const std::string& name) const {
  const auto it = tensors_.find(name);
  DFAR_CHECK(it != tensors_.end(), path_, ": no tensor named '", name, "'");
  const SafetensorInfo& info = it->second;
  const uint8_t* p = Data(info);
  const size_t n = (info.end - info.begin) / DtypeBytes(info.dtype);
  std::vector<float> out(n);
  if (info.dtype == "F32") {
    std::memcpy(out.data(), p, n * 4);
  } else if (info.dtype == "F16" || info.dtype == "BF16") {
    const bool bf = info.dtype == "BF16";
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      out[i] = bf ? BFloat16ToFloat(h) : HalfToFloat(h);
    }
  } else {
    DFAR_THROW(path_, ": tensor '", name, "' has dtype ", info.dtype, "; weights must be F32, F16 or BF16");
  }
  return out;
}

SafetensorsCheckpoint SafetensorsCheckpoint::Open(const std::string& dir_or_file) {
  namespace fs = std::filesystem;
  SafetensorsCheckpoint ckpt;
  std::vector<std::string> files;
  const fs::path p(dir_or_file);
  if (fs::is_directory(p) && fs::exists(p / "model.safetensors.index.json")) {
    const std::string index_path = (p / "model.safetensors.index.json").string();
    std::ifstream in(index_path);
    json index;
    try {
      index = json::parse(in);
    } catch (const json::exception& e) {
      DFAR_THROW(index_path, ": invalid JSON: ", e.what());
    }
    DFAR_CHECK(index.contains("weight_map") && index["weight_map"].is_object(), index_path, ": no weight_map");
    std::map<std::string, bool> seen;
    for (const auto& [name, file] : index["weight_map"].items()) {
      DFAR_CHECK(file.is_string(), index_path, ": weight_map entry for '", name, "' is not a file name");
      if (!seen[file.get<std::string>()]) files.push_back((p / file.get<std::string>()).string());
      seen[file.get<std::string>()] = true;
    }
  } else if (fs::is_directory(p)) {
    files.push_back((p / "model.safetensors").string());
  } else {
    files.push_back(dir_or_file);
  }
  for (const auto& f : files) {
    auto file = SafetensorsFile::Open(f);
    for (const auto& [name, info] : file->tensors()) ckpt.by_tensor_[name] = file;
  }
  return ckpt;
}

const SafetensorInfo* SafetensorsCheckpoint::Find(const std::string& name) const {
  const auto it = by_tensor_.find(name);
  return it == by_tensor_.end() ? nullptr : &it->second->tensors().at(name);
}

std::vector<float> SafetensorsCheckpoint::ToFloat(const std::string& name) const {
  const auto it = by_tensor_.find(name);
  DFAR_CHECK(it != by_tensor_.end(), "no tensor named '", name, "' in the safetensors checkpoint");
  return it->second->ToFloat(name);
}

std::vector<std::string> SafetensorsCheckpoint::Names() const {
  std::vector<std::string> names;
  for (const auto& kv : by_tensor_) names.push_back(kv.first);
  return names;
}

void WriteSafetensors(const std::string& path, const std::vector<SafetensorToWrite>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    uint64_t n = 1;
    for (auto d : t.shape) n *= static_cast<uint64_t>(d);
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + 4 * n}}};
    offset += 4 * n;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // Align the data section to 8 bytes.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    DFAR_CHECK(out.good(), "cannot write '", tmp, "'");
    const uint64_t len = text.size();
    out.write(reinterpret_cast<const char*>(&len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& t : tensors) {
      uint64_t n = 1;
      for (auto d : t.shape) n *= static_cast<uint64_t>(d);
      out.write(reinterpret_cast<const char*>(t.data), static_cast<std::streamsize>(4 * n));
    }
    DFAR_CHECK(out.good(), "write to '", tmp, "' failed (disk full?)");
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace dfar
