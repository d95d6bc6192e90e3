// GgufFile: a read-only view of a GGUF model file (llama.cpp's format).
//
// Owns: the memory-mapped bytes of one GGUF v2 or v3 file (little-endian),
// its metadata (key -> typed value) and its tensor directory (name, shape,
// ggml type, byte range). Tensor bytes are not copied: TensorData() points
// into the mapping, and Dequantize() converts F32, F16, BF16, Q8_0, Q4_0 and
// Q4_1 to float exactly as ggml does.
//
// Untrusted input: Open() validates every count, length, offset and size
// against the real file size before using it, so a truncated or forged file
// gives a dfar::Error naming the file and what was wrong; never a crash, and
// never an allocation sized by an unchecked count.
//
// Failure: every function throws dfar::Error (missing key, wrong value type,
// unknown tensor, unsupported ggml type for Dequantize).
// Thread-safety: immutable after Open(); all const methods are safe to call
// concurrently. Movable, not copyable.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace dfar {

// GGUF metadata value types, as numbered in the file.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// "uint32", "string", "array"... ; "type(N)" for numbers outside the enum.
std::string GgufTypeName(GgufType type);

// The ggml tensor types Dequantize() understands, numbered as in ggml.h.
// Other numbers are valid in a file (Q4_K, IQ2_XS, ...): their sizes are
// known so that bounds are checked, but they cannot be dequantized.
namespace ggml_type {
constexpr uint32_t kF32 = 0;
constexpr uint32_t kF16 = 1;
constexpr uint32_t kQ4_0 = 2;
constexpr uint32_t kQ4_1 = 3;
constexpr uint32_t kQ8_0 = 8;
constexpr uint32_t kBF16 = 30;
}  // namespace ggml_type

// "F32", "Q4_K", ... ; "type(N)" for numbers ggml does not define.
std::string GgmlTypeName(uint32_t type);

// One metadata entry. The value's bytes stay in the mapping; the typed
// accessors of GgufFile decode them.
struct GgufKv {
  GgufType type = GgufType::kUint8;
  GgufType elem_type = GgufType::kUint8;  // Arrays only.
  uint64_t count = 1;                     // Array length; 1 for scalars.
  uint64_t offset = 0;                    // File offset of the value (array: of its first element).
  uint64_t nbytes = 0;                    // Bytes the value (array: its elements) occupies.
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // ggml order: shape[0] varies fastest (columns of a row-major matrix).
  uint32_t type = 0;           // ggml type number (ggml_type::k...).
  uint64_t offset = 0;         // Relative to the start of the data section.
  uint64_t nbytes = 0;         // Bytes of data in the file.
  int64_t numel = 0;           // Product of shape.
};

class GgufFile {
 public:
  // Memory-maps and validates `path`.
  static GgufFile Open(const std::string& path);
  // Parses bytes held in memory (tests, fuzzers). `name` stands for the file in messages.
  static GgufFile FromBytes(const std::string& name, std::string bytes);

  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;
  ~GgufFile();

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t file_size() const;
  uint64_t data_offset() const { return data_offset_; }  // File offset of the data section.

  // ---- metadata -----------------------------------------------------------
  bool Has(const std::string& key) const { return kv_.count(key) != 0; }
  const std::map<std::string, GgufKv>& metadata() const { return kv_; }
  // Throws unless present. Integer getters accept any integer type whose value
  // fits; float getters accept float32 and float64.
  std::string GetString(const std::string& key) const;
  std::string GetString(const std::string& key, const std::string& fallback) const;
  uint32_t GetU32(const std::string& key) const;
  uint32_t GetU32(const std::string& key, uint32_t fallback) const;
  int64_t GetI64(const std::string& key) const;
  int64_t GetI64(const std::string& key, int64_t fallback) const;
  float GetF32(const std::string& key) const;
  float GetF32(const std::string& key, float fallback) const;
  bool GetBool(const std::string& key) const;
  bool GetBool(const std::string& key, bool fallback) const;
  std::vector<std::string> GetStringArray(const std::string& key) const;
  std::vector<float> GetF32Array(const std::string& key) const;
  std::vector<int32_t> GetI32Array(const std::string& key) const;

  // ---- tensors ------------------------------------------------------------
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(const std::string& name) const;  // nullptr if absent.
  const GgufTensorInfo& Tensor(const std::string& name) const;      // Throws if absent.
  // The tensor's bytes inside the mapping (valid while this GgufFile lives).
  const uint8_t* TensorData(const GgufTensorInfo& info) const;
  // Converts to float32, ggml order (shape[0] fastest). Throws for types
  // other than F32, F16, BF16, Q8_0, Q4_0, Q4_1, naming tensor and type.
  std::vector<float> Dequantize(const GgufTensorInfo& info) const;
  // Same, into caller memory of info.numel floats.
  void DequantizeInto(const GgufTensorInfo& info, float* out) const;

  struct Bytes;  // The mapping or owned buffer; defined in gguf.cpp.

 private:
  GgufFile();
  void Parse();
  void CheckDequantizable(const GgufTensorInfo& info) const;
  const GgufKv& Find(const std::string& key, const char* wanted) const;
  int64_t ReadInteger(const std::string& key, const GgufKv& kv, uint64_t index) const;
  double ReadFloat(const std::string& key, const GgufKv& kv, uint64_t index) const;

  std::string path_;
  std::unique_ptr<Bytes> bytes_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufKv> kv_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// IEEE half and bfloat16 to float, exactly (subnormals, inf, NaN kept).
float HalfToFloat(uint16_t h);
float BFloat16ToFloat(uint16_t h);

}  // namespace dfar
