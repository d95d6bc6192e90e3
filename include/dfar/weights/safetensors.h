// Reading Hugging Face safetensors files (single or sharded).
//
// Owns: parsing the 8-byte header length and JSON header, and handing out
// tensor bytes from a read-only memory map. Every offset is bounds-checked
// against the real file size before use; the header length itself is capped
// (100 MB, as the reference implementation does) before any allocation.
// Failure: throws dfar::Error naming the file and tensor: truncated file,
// forged header length, overlapping or out-of-range offsets, unknown dtype.
// Thread-safety: immutable after Open; reads are safe from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace dfar {

struct SafetensorInfo {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // Byte range within the data section.
  std::string file;             // The file that holds it.
};

class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> Open(const std::string& path);
  // Parses bytes held in memory (tests, fuzzers). `name` stands for the file in messages.
  static std::shared_ptr<SafetensorsFile> FromBytes(const std::string& name, std::string bytes);
  ~SafetensorsFile();

  const std::map<std::string, SafetensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Raw bytes of a tensor inside the map (valid while this object lives).
  const uint8_t* Data(const SafetensorInfo& info) const;
  // The tensor converted to float32 (F32, F16, BF16 accepted).
  std::vector<float> ToFloat(const std::string& name) const;
  const std::string& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  void Parse();  // Validates the header of map_[0, size_).
  std::string path_;
  std::string owned_;    // FromBytes: the bytes map_ points into.
  bool mapped_ = false;  // Open: map_ is an mmap to undo.
  const uint8_t* map_ = nullptr;
  size_t size_ = 0;
  size_t data_start_ = 0;
  std::map<std::string, SafetensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A model directory's weights: model.safetensors, or the shards listed in
// model.safetensors.index.json. Tensor names map to the file that holds them.
class SafetensorsCheckpoint {
 public:
  static SafetensorsCheckpoint Open(const std::string& dir_or_file);
  const SafetensorInfo* Find(const std::string& name) const;
  std::vector<float> ToFloat(const std::string& name) const;
  std::vector<std::string> Names() const;

 private:
  std::map<std::string, std::shared_ptr<SafetensorsFile>> by_tensor_;
};

// Writes tensors (float32 data) as a safetensors file, atomically (tmp + rename).
struct SafetensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;
};
void WriteSafetensors(const std::string& path, const std::vector<SafetensorToWrite>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace dfar
