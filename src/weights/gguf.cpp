// GGUF reader. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
//
// Why the parser is shaped this way: a GGUF file is untrusted input that
// names its own sizes (string lengths, array counts, tensor dims, offsets).
// Every read goes through Cursor, which checks the bytes exist before it
// touches them, and every count is compared with the bytes left before it
// drives a loop or an allocation. Arithmetic on sizes is overflow-checked.
#include "dfar/weights/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "dfar/core/error.h"

namespace dfar {

// ---------------------------------------------------------------------------
// The bytes: a read-only mapping of the file, or a buffer owned in memory.
struct GgufFile::Bytes {
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  void* map = nullptr;  // munmap'ed on destruction when set.
  std::string owned;

  ~Bytes() {
    if (map != nullptr) munmap(map, size);
  }
};

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian uint32.
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS.
constexpr uint32_t kDefaultAlignment = 32;

struct TypeSize {
  uint32_t type;
  const char* name;
  uint32_t block;  // Elements per block.
  uint32_t bytes;  // Bytes per block.
};

// Sizes of every ggml type (ggml.c type_traits), so that tensors of types
// dfar cannot dequantize are still bounds-checked.
constexpr TypeSize kTypeSizes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},      {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},   {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},   {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},        {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

const TypeSize* FindTypeSize(uint32_t type) {
  for (const TypeSize& t : kTypeSizes) {
    if (t.type == type) return &t;
  }
  return nullptr;
}

// Bytes of one scalar metadata value; 0 for string and array (variable size).
uint64_t ScalarSize(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    default:
      return 0;
  }
}

bool IsKnownType(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufType::kFloat64);
}

bool IsIntegerType(GgufType t) {
  return t == GgufType::kUint8 || t == GgufType::kInt8 || t == GgufType::kUint16 || t == GgufType::kInt16 ||
         t == GgufType::kUint32 || t == GgufType::kInt32 || t == GgufType::kUint64 || t == GgufType::kInt64;
}

template <typename T>
T LoadLE(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // Host is little-endian (x86-64, aarch64), as is GGUF.
  return v;
}

// Reads the file front to back; every read is bounds-checked first.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* data, uint64_t size) : path_(path), data_(data), size_(size) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  void Need(uint64_t n, const std::string& what) const {
    if (n > remaining()) {
      DFAR_THROW(path_, ": truncated: ", what, " at byte ", pos_, " needs ", n, " bytes but file has ", size_,
                 " bytes");
    }
  }
  template <typename T>
  T Read(const std::string& what) {
    Need(sizeof(T), what);
    T v = LoadLE<T>(data_ + pos_);
    pos_ += sizeof(T);
    return v;
  }
  std::string ReadString(const std::string& what) {
    uint64_t len = Read<uint64_t>(what + " length");
    Need(len, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return s;
  }
  void Skip(uint64_t n, const std::string& what) {
    Need(n, what);
    pos_ += n;
  }

 private:
  const std::string& path_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}
bool AddOverflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_add_overflow(a, b, out);
}

}  // namespace

// ---------------------------------------------------------------------------
std::string GgufTypeName(GgufType type) {
  static const char* const kNames[] = {"uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
                                       "bool",  "string", "array",  "uint64", "int64",  "float64"};
  uint32_t t = static_cast<uint32_t>(type);
  if (IsKnownType(t)) return kNames[t];
  return "type(" + std::to_string(t) + ")";
}

std::string GgmlTypeName(uint32_t type) {
  const TypeSize* ts = FindTypeSize(type);
  if (ts != nullptr) return ts->name;
  return "type(" + std::to_string(type) + ")";
}

float HalfToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // Inf / NaN.
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // Normal: rebias 15 -> 127.
  } else if (mant == 0) {
    bits = sign;  // Signed zero.
  } else {
    // Subnormal half: the value is mant * 2^-24, exact in float.
    float v = std::ldexp(static_cast<float>(mant), -24);
    return sign != 0 ? -v : v;
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

float BFloat16ToFloat(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// ---------------------------------------------------------------------------
// Opening.

GgufFile::GgufFile() = default;
GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

uint64_t GgufFile::file_size() const {
  return bytes_->size;
}

GgufFile GgufFile::Open(const std::string& path) {
  GgufFile f;
  f.path_ = path;
  f.bytes_ = std::make_unique<Bytes>();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) DFAR_THROW(path, ": cannot open GGUF file: ", std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    DFAR_THROW(path, ": cannot stat GGUF file: ", std::strerror(err));
  }
  if (st.st_size > 0) {
    void* m = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    ::close(fd);
    if (m == MAP_FAILED) DFAR_THROW(path, ": cannot mmap GGUF file: ", std::strerror(err));
    f.bytes_->map = m;
    f.bytes_->data = static_cast<const uint8_t*>(m);
    f.bytes_->size = static_cast<uint64_t>(st.st_size);
  } else {
    ::close(fd);
  }
  f.Parse();
  return f;
}

GgufFile GgufFile::FromBytes(const std::string& name, std::string bytes) {
  GgufFile f;
  f.path_ = name;
  f.bytes_ = std::make_unique<Bytes>();
  f.bytes_->owned = std::move(bytes);
  f.bytes_->data = reinterpret_cast<const uint8_t*>(f.bytes_->owned.data());
  f.bytes_->size = f.bytes_->owned.size();
  f.Parse();
  return f;
}

// ---------------------------------------------------------------------------
// Parsing.

namespace {

// Reads the type tag and the value that follows it; returns where it lies.
GgufKv ReadKvValue(Cursor& c, const std::string& path, const std::string& key) {
  GgufKv kv;
  uint32_t t = c.Read<uint32_t>("type of metadata key '" + key + "'");
  if (!IsKnownType(t)) DFAR_THROW(path, ": metadata key '", key, "' has unknown value type ", t);
  kv.type = static_cast<GgufType>(t);
  if (kv.type == GgufType::kString) {
    uint64_t len = c.Read<uint64_t>("length of string '" + key + "'");
    kv.offset = c.pos();
    kv.nbytes = len;
    c.Skip(len, "string value of '" + key + "'");
    return kv;
  }
  if (kv.type != GgufType::kArray) {
    kv.offset = c.pos();
    kv.nbytes = ScalarSize(kv.type);
    c.Skip(kv.nbytes, "value of '" + key + "'");
    return kv;
  }
  uint32_t et = c.Read<uint32_t>("element type of array '" + key + "'");
  if (!IsKnownType(et)) DFAR_THROW(path, ": array '", key, "' has unknown element type ", et);
  kv.elem_type = static_cast<GgufType>(et);
  if (kv.elem_type == GgufType::kArray) DFAR_THROW(path, ": array '", key, "' holds arrays (nesting unsupported)");
  kv.count = c.Read<uint64_t>("length of array '" + key + "'");
  kv.offset = c.pos();
  uint64_t min_elem = kv.elem_type == GgufType::kString ? 8 : ScalarSize(kv.elem_type);
  if (kv.count > c.remaining() / min_elem) {
    DFAR_THROW(path, ": array '", key, "' claims ", kv.count, " elements of ", GgufTypeName(kv.elem_type), " but only ",
               c.remaining(), " bytes remain at byte ", c.pos());
  }
  if (kv.elem_type != GgufType::kString) {
    kv.nbytes = kv.count * min_elem;  // Cannot overflow: checked against remaining() above.
    c.Skip(kv.nbytes, "elements of array '" + key + "'");
    return kv;
  }
  for (uint64_t i = 0; i < kv.count; ++i) {
    uint64_t len = c.Read<uint64_t>("length of element " + std::to_string(i) + " of '" + key + "'");
    c.Skip(len, "element " + std::to_string(i) + " of '" + key + "'");
  }
  kv.nbytes = c.pos() - kv.offset;
  return kv;
}

GgufTensorInfo ReadTensorInfo(Cursor& c, const std::string& path, uint64_t index) {
  GgufTensorInfo t;
  t.name = c.ReadString("name of tensor " + std::to_string(index));
  const std::string what = "tensor '" + t.name + "'";
  uint32_t n_dims = c.Read<uint32_t>("dimension count of " + what);
  if (n_dims > kMaxDims) DFAR_THROW(path, ": ", what, " has ", n_dims, " dimensions (at most ", kMaxDims, ")");
  uint64_t numel = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    uint64_t ne = c.Read<uint64_t>("dimension " + std::to_string(d) + " of " + what);
    if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) || MulOverflows(numel, ne, &numel) ||
        numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      DFAR_THROW(path, ": ", what, " has an element count that overflows int64");
    }
    t.shape.push_back(static_cast<int64_t>(ne));
  }
  t.numel = static_cast<int64_t>(numel);
  t.type = c.Read<uint32_t>("type of " + what);
  t.offset = c.Read<uint64_t>("data offset of " + what);
  const TypeSize* ts = FindTypeSize(t.type);
  if (ts == nullptr) DFAR_THROW(path, ": ", what, " has unknown ggml type ", t.type);
  uint64_t ne0 = t.shape.empty() ? 1 : static_cast<uint64_t>(t.shape[0]);
  if (ne0 % ts->block != 0) {
    DFAR_THROW(path, ": ", what, " of type ", ts->name, " has row length ", ne0, ", not a multiple of the block size ",
               ts->block);
  }
  // numel < 2^63, but times 4 (F32) or 8 (F64, I64) bytes it can wrap around
  // to a small number that would pass every bounds check below.
  if (MulOverflows(numel / ts->block, ts->bytes, &t.nbytes)) {
    DFAR_THROW(path, ": ", what, " of ", numel, " elements of ", ts->name, " needs more bytes than any file holds");
  }
  return t;
}

}  // namespace

void GgufFile::Parse() {
  Cursor c(path_, bytes_->data, bytes_->size);
  if (bytes_->size < 4) DFAR_THROW(path_, ": not a GGUF file: ", bytes_->size, " bytes, too short for the magic");
  uint32_t magic = c.Read<uint32_t>("magic");
  if (magic != kMagic) DFAR_THROW(path_, ": not a GGUF file: bad magic (expected \"GGUF\")");
  version_ = c.Read<uint32_t>("version");
  if (version_ == 0x02000000u || version_ == 0x03000000u) {
    DFAR_THROW(path_, ": big-endian GGUF files are not supported");
  }
  if (version_ != 2 && version_ != 3) DFAR_THROW(path_, ": unsupported GGUF version ", version_, " (need 2 or 3)");
  uint64_t n_tensors = c.Read<uint64_t>("tensor count");
  uint64_t n_kv = c.Read<uint64_t>("metadata count");
  // Smallest encodings: a kv is 8 (key length) + 4 (type) + 1 (uint8) bytes; a
  // tensor info is 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
  if (n_kv > c.remaining() / 13) DFAR_THROW(path_, ": metadata count ", n_kv, " exceeds what the file can hold");
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.ReadString("key of metadata entry " + std::to_string(i));
    GgufKv kv = ReadKvValue(c, path_, key);
    if (!kv_.emplace(key, kv).second) DFAR_THROW(path_, ": duplicate metadata key '", key, "'");
  }
  if (n_tensors > c.remaining() / 24)
    DFAR_THROW(path_, ": tensor count ", n_tensors, " exceeds what the file can hold");
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t = ReadTensorInfo(c, path_, i);
    if (!tensor_index_.emplace(t.name, tensors_.size()).second) DFAR_THROW(path_, ": duplicate tensor '", t.name, "'");
    tensors_.push_back(std::move(t));
  }
  alignment_ = Has("general.alignment") ? GetU32("general.alignment") : kDefaultAlignment;
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0) {
    DFAR_THROW(path_, ": general.alignment ", alignment_, " is not a power of two");
  }
  data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;  // pos < 2^63: no overflow.
  for (const GgufTensorInfo& t : tensors_) {
    if (t.offset % alignment_ != 0) {
      DFAR_THROW(path_, ": tensor '", t.name, "' has offset ", t.offset, ", not a multiple of the alignment ",
                 alignment_);
    }
    uint64_t begin = 0, end = 0;
    if (AddOverflows(data_offset_, t.offset, &begin) || AddOverflows(begin, t.nbytes, &end)) {
      DFAR_THROW(path_, ": tensor '", t.name, "' has offset ", t.offset, " past any file size");
    }
    if (end > bytes_->size) {
      DFAR_THROW(path_, ": truncated: tensor '", t.name, "' data ends at byte ", end, " but file has ", bytes_->size,
                 " bytes");
    }
  }
}

// ---------------------------------------------------------------------------
// Metadata accessors.

const GgufKv& GgufFile::Find(const std::string& key, const char* wanted) const {
  auto it = kv_.find(key);
  if (it == kv_.end()) DFAR_THROW(path_, ": metadata key '", key, "' (", wanted, ") is missing");
  return it->second;
}

int64_t GgufFile::ReadInteger(const std::string& key, const GgufKv& kv, uint64_t index) const {
  GgufType t = kv.type == GgufType::kArray ? kv.elem_type : kv.type;
  const uint8_t* p = bytes_->data + kv.offset + index * ScalarSize(t);
  switch (t) {
    case GgufType::kUint8:
      return LoadLE<uint8_t>(p);
    case GgufType::kInt8:
      return LoadLE<int8_t>(p);
    case GgufType::kUint16:
      return LoadLE<uint16_t>(p);
    case GgufType::kInt16:
      return LoadLE<int16_t>(p);
    case GgufType::kUint32:
      return LoadLE<uint32_t>(p);
    case GgufType::kInt32:
      return LoadLE<int32_t>(p);
    case GgufType::kInt64:
      return LoadLE<int64_t>(p);
    case GgufType::kUint64: {
      uint64_t v = LoadLE<uint64_t>(p);
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        DFAR_THROW(path_, ": metadata key '", key, "' value ", v, " does not fit in int64");
      }
      return static_cast<int64_t>(v);
    }
    default:
      DFAR_THROW(path_, ": metadata key '", key, "' has type ", GgufTypeName(t), ", expected an integer");
  }
}

double GgufFile::ReadFloat(const std::string& key, const GgufKv& kv, uint64_t index) const {
  GgufType t = kv.type == GgufType::kArray ? kv.elem_type : kv.type;
  const uint8_t* p = bytes_->data + kv.offset + index * ScalarSize(t);
  if (t == GgufType::kFloat32) return LoadLE<float>(p);
  if (t == GgufType::kFloat64) return LoadLE<double>(p);
  DFAR_THROW(path_, ": metadata key '", key, "' has type ", GgufTypeName(t), ", expected a float");
}

std::string GgufFile::GetString(const std::string& key) const {
  const GgufKv& kv = Find(key, "string");
  if (kv.type != GgufType::kString) {
    DFAR_THROW(path_, ": metadata key '", key, "' has type ", GgufTypeName(kv.type), ", expected string");
  }
  return std::string(reinterpret_cast<const char*>(bytes_->data + kv.offset), kv.nbytes);
}

std::string GgufFile::GetString(const std::string& key, const std::string& fallback) const {
  return Has(key) ? GetString(key) : fallback;
}

uint32_t GgufFile::GetU32(const std::string& key) const {
  const GgufKv& kv = Find(key, "uint32");
  if (kv.type == GgufType::kArray) DFAR_THROW(path_, ": metadata key '", key, "' is an array, expected uint32");
  int64_t v = ReadInteger(key, kv, 0);
  if (v < 0 || v > static_cast<int64_t>(std::numeric_limits<uint32_t>::max())) {
    DFAR_THROW(path_, ": metadata key '", key, "' value ", v, " does not fit in uint32");
  }
  return static_cast<uint32_t>(v);
}

uint32_t GgufFile::GetU32(const std::string& key, uint32_t fallback) const {
  return Has(key) ? GetU32(key) : fallback;
}

int64_t GgufFile::GetI64(const std::string& key) const {
  const GgufKv& kv = Find(key, "int64");
  if (kv.type == GgufType::kArray) DFAR_THROW(path_, ": metadata key '", key, "' is an array, expected int64");
  return ReadInteger(key, kv, 0);
}

int64_t GgufFile::GetI64(const std::string& key, int64_t fallback) const {
  return Has(key) ? GetI64(key) : fallback;
}

float GgufFile::GetF32(const std::string& key) const {
  const GgufKv& kv = Find(key, "float32");
  if (kv.type == GgufType::kArray) DFAR_THROW(path_, ": metadata key '", key, "' is an array, expected float32");
  return static_cast<float>(ReadFloat(key, kv, 0));
}

float GgufFile::GetF32(const std::string& key, float fallback) const {
  return Has(key) ? GetF32(key) : fallback;
}

bool GgufFile::GetBool(const std::string& key) const {
  const GgufKv& kv = Find(key, "bool");
  if (kv.type != GgufType::kBool) {
    DFAR_THROW(path_, ": metadata key '", key, "' has type ", GgufTypeName(kv.type), ", expected bool");
  }
  return bytes_->data[kv.offset] != 0;
}

bool GgufFile::GetBool(const std::string& key, bool fallback) const {
  return Has(key) ? GetBool(key) : fallback;
}

std::vector<std::string> GgufFile::GetStringArray(const std::string& key) const {
  const GgufKv& kv = Find(key, "array of string");
  if (kv.type != GgufType::kArray || kv.elem_type != GgufType::kString) {
    DFAR_THROW(path_, ": metadata key '", key, "' is not an array of string");
  }
  // Lengths were validated by Parse(); count <= nbytes / 8 bounds the reserve.
  std::vector<std::string> out;
  out.reserve(kv.count);
  const uint8_t* p = bytes_->data + kv.offset;
  for (uint64_t i = 0; i < kv.count; ++i) {
    uint64_t len = LoadLE<uint64_t>(p);
    out.emplace_back(reinterpret_cast<const char*>(p + 8), len);
    p += 8 + len;
  }
  return out;
}

std::vector<float> GgufFile::GetF32Array(const std::string& key) const {
  const GgufKv& kv = Find(key, "array of float32");
  if (kv.type != GgufType::kArray) DFAR_THROW(path_, ": metadata key '", key, "' is not an array");
  std::vector<float> out;
  out.reserve(kv.count);  // Parse() checked count * element size fits in the file.
  for (uint64_t i = 0; i < kv.count; ++i) out.push_back(static_cast<float>(ReadFloat(key, kv, i)));
  return out;
}

std::vector<int32_t> GgufFile::GetI32Array(const std::string& key) const {
  const GgufKv& kv = Find(key, "array of int32");
  if (kv.type != GgufType::kArray || !IsIntegerType(kv.elem_type)) {
    DFAR_THROW(path_, ": metadata key '", key, "' is not an array of integers");
  }
  std::vector<int32_t> out;
  out.reserve(kv.count);
  for (uint64_t i = 0; i < kv.count; ++i) {
    int64_t v = ReadInteger(key, kv, i);
    if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
      DFAR_THROW(path_, ": metadata key '", key, "' element ", i, " value ", v, " does not fit in int32");
    }
    out.push_back(static_cast<int32_t>(v));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Tensors.

const GgufTensorInfo* GgufFile::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::Tensor(const std::string& name) const {
  const GgufTensorInfo* t = FindTensor(name);
  if (t == nullptr) DFAR_THROW(path_, ": no tensor named '", name, "'");
  return *t;
}

const uint8_t* GgufFile::TensorData(const GgufTensorInfo& info) const {
  // Re-check: `info` may not come from this file.
  uint64_t begin = 0, end = 0;
  if (AddOverflows(data_offset_, info.offset, &begin) || AddOverflows(begin, info.nbytes, &end) || end > bytes_->size) {
    DFAR_THROW(path_, ": tensor '", info.name, "' lies outside the file");
  }
  return bytes_->data + begin;
}

namespace {

// Block layouts and formulas follow ggml-quants.c dequantize_row_*.
void DequantQ8_0(const uint8_t* src, int64_t n, float* out) {
  for (int64_t b = 0; b < n / 32; ++b, src += 34) {
    const float d = HalfToFloat(LoadLE<uint16_t>(src));
    const int8_t* qs = reinterpret_cast<const int8_t*>(src + 2);
    for (int j = 0; j < 32; ++j) out[b * 32 + j] = qs[j] * d;
  }
}

void DequantQ4_0(const uint8_t* src, int64_t n, float* out) {
  for (int64_t b = 0; b < n / 32; ++b, src += 18) {
    const float d = HalfToFloat(LoadLE<uint16_t>(src));
    const uint8_t* qs = src + 2;
    for (int j = 0; j < 16; ++j) {
      const int x0 = (qs[j] & 0x0F) - 8;
      const int x1 = (qs[j] >> 4) - 8;
      out[b * 32 + j] = x0 * d;
      out[b * 32 + j + 16] = x1 * d;
    }
  }
}

void DequantQ4_1(const uint8_t* src, int64_t n, float* out) {
  for (int64_t b = 0; b < n / 32; ++b, src += 20) {
    const float d = HalfToFloat(LoadLE<uint16_t>(src));
    const float m = HalfToFloat(LoadLE<uint16_t>(src + 2));
    const uint8_t* qs = src + 4;
    for (int j = 0; j < 16; ++j) {
      const int x0 = qs[j] & 0x0F;
      const int x1 = qs[j] >> 4;
      out[b * 32 + j] = x0 * d + m;
      out[b * 32 + j + 16] = x1 * d + m;
    }
  }
}

}  // namespace

// Throws unless `info` is a tensor dfar can dequantize and its byte size
// matches its element count (so the loops below stay inside the data).
void GgufFile::CheckDequantizable(const GgufTensorInfo& info) const {
  switch (info.type) {
    case ggml_type::kF32:
    case ggml_type::kF16:
    case ggml_type::kBF16:
    case ggml_type::kQ8_0:
    case ggml_type::kQ4_0:
    case ggml_type::kQ4_1:
      break;
    default:
      DFAR_THROW(path_, ": tensor '", info.name, "' has ggml type ", GgmlTypeName(info.type),
                 ", which dfar cannot dequantize (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)");
  }
  const TypeSize* ts = FindTypeSize(info.type);
  uint64_t nbytes = 0;
  if (info.numel < 0 || info.numel % ts->block != 0 ||
      MulOverflows(static_cast<uint64_t>(info.numel) / ts->block, ts->bytes, &nbytes) || nbytes != info.nbytes) {
    DFAR_THROW(path_, ": tensor '", info.name, "' has ", info.numel, " elements of ", ts->name, " but ", info.nbytes,
               " bytes");
  }
  TensorData(info);
}

void GgufFile::DequantizeInto(const GgufTensorInfo& info, float* out) const {
  CheckDequantizable(info);
  const uint8_t* src = TensorData(info);
  const int64_t n = info.numel;
  if (n == 0) return;  // `out` may be null then (an empty vector's data()), and memcpy must not see it.
  switch (info.type) {
    case ggml_type::kF32:
      std::memcpy(out, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case ggml_type::kF16:
      for (int64_t i = 0; i < n; ++i) out[i] = HalfToFloat(LoadLE<uint16_t>(src + 2 * i));
      return;
    case ggml_type::kBF16:
      for (int64_t i = 0; i < n; ++i) out[i] = BFloat16ToFloat(LoadLE<uint16_t>(src + 2 * i));
      return;
    case ggml_type::kQ8_0:
      return DequantQ8_0(src, n, out);
    case ggml_type::kQ4_0:
      return DequantQ4_0(src, n, out);
    case ggml_type::kQ4_1:
      return DequantQ4_1(src, n, out);
    default:
      break;  // Unreachable: CheckDequantizable() threw.
  }
}

std::vector<float> GgufFile::Dequantize(const GgufTensorInfo& info) const {
  CheckDequantizable(info);  // Before allocating numel floats.
  std::vector<float> out(static_cast<size_t>(info.numel));
  DequantizeInto(info, out.data());
  return out;
}

}  // namespace dfar
