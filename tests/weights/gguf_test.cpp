// Tests for the GGUF reader: small files written here cover every metadata
// type, every dequantized ggml type, and hostile input (truncation at every
// offset, forged counts, random bit flips); a last test reads the real
// SmolLM2 file from scripts/fetch_model.sh when it is cached.
#include "dfar/weights/gguf.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "dfar/core/error.h"
#include "helpers/test_util.h"

namespace dfar {
namespace {

using testing::ErrorOf;

// ---------------------------------------------------------------------------
// A tiny GGUF writer: raw little-endian bytes, and a builder on top.

struct Buf {
  std::string bytes;
  template <typename T>
  Buf& Put(T v) {
    bytes.append(reinterpret_cast<const char*>(&v), sizeof(T));
    return *this;
  }
  Buf& Str(const std::string& s) {
    Put<uint64_t>(s.size());
    bytes += s;
    return *this;
  }
};

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> shape;
  uint32_t type;
  std::string data;
};

class GgufWriter {
 public:
  explicit GgufWriter(uint32_t version = 3) : version_(version) {}

  template <typename T>
  GgufWriter& Kv(const std::string& key, GgufType type, T value) {
    kv_.Str(key).Put<uint32_t>(static_cast<uint32_t>(type)).Put<T>(value);
    ++n_kv_;
    return *this;
  }
  GgufWriter& KvString(const std::string& key, const std::string& value) {
    kv_.Str(key).Put<uint32_t>(8).Str(value);
    ++n_kv_;
    return *this;
  }
  template <typename T>
  GgufWriter& KvArray(const std::string& key, GgufType elem, const std::vector<T>& values) {
    kv_.Str(key).Put<uint32_t>(9).Put<uint32_t>(static_cast<uint32_t>(elem)).Put<uint64_t>(values.size());
    for (const T& v : values) kv_.Put<T>(v);
    ++n_kv_;
    return *this;
  }
  GgufWriter& KvStringArray(const std::string& key, const std::vector<std::string>& values) {
    kv_.Str(key).Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(values.size());
    for (const std::string& v : values) kv_.Str(v);
    ++n_kv_;
    return *this;
  }
  GgufWriter& Tensor(const std::string& name, std::vector<uint64_t> shape, uint32_t type, std::string data) {
    tensors_.push_back({name, std::move(shape), type, std::move(data)});
    return *this;
  }

  // The file; the last tensor's data ends exactly at the end of the file.
  std::string Build(uint32_t alignment = 32) const {
    Buf out;
    out.bytes = "GGUF";
    out.Put<uint32_t>(version_).Put<uint64_t>(tensors_.size()).Put<uint64_t>(n_kv_);
    out.bytes += kv_.bytes;
    std::vector<uint64_t> offsets;
    uint64_t off = 0;
    for (const TensorSpec& t : tensors_) {
      offsets.push_back(off);
      off = (off + t.data.size() + alignment - 1) / alignment * alignment;
    }
    for (size_t i = 0; i < tensors_.size(); ++i) {
      out.Str(tensors_[i].name).Put<uint32_t>(tensors_[i].shape.size());
      for (uint64_t d : tensors_[i].shape) out.Put<uint64_t>(d);
      out.Put<uint32_t>(tensors_[i].type).Put<uint64_t>(offsets[i]);
    }
    for (size_t i = 0; i < tensors_.size(); ++i) {
      out.bytes.resize((out.bytes.size() + alignment - 1) / alignment * alignment, '\0');
      out.bytes += tensors_[i].data;
    }
    return out.bytes;
  }

 private:
  uint32_t version_;
  Buf kv_;
  uint64_t n_kv_ = 0;
  std::vector<TensorSpec> tensors_;
};

template <typename T>
std::string Raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::string ParseError(const std::string& bytes) {
  return ErrorOf([&] { GgufFile::FromBytes("t.gguf", bytes); });
}

std::string TempPath(const std::string& name) {
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp != nullptr ? tmp : "/tmp") + "/dfar_gguf_test_" + std::to_string(::getpid()) + "_" + name;
}

// A file with one of everything, used by several tests.
std::string RichFile(uint32_t version = 3) {
  GgufWriter w(version);
  w.KvString("general.architecture", "llama")
      .Kv<uint8_t>("u8", GgufType::kUint8, 200)
      .Kv<int8_t>("i8", GgufType::kInt8, -100)
      .Kv<uint16_t>("u16", GgufType::kUint16, 60000)
      .Kv<int16_t>("i16", GgufType::kInt16, -30000)
      .Kv<uint32_t>("u32", GgufType::kUint32, 4000000000u)
      .Kv<int32_t>("i32", GgufType::kInt32, -2000000000)
      .Kv<float>("f32", GgufType::kFloat32, 1.5f)
      .Kv<uint8_t>("bool", GgufType::kBool, 1)
      .Kv<uint64_t>("u64", GgufType::kUint64, 1ull << 40)
      .Kv<int64_t>("i64", GgufType::kInt64, -(1ll << 40))
      .Kv<double>("f64", GgufType::kFloat64, 0.25)
      .KvStringArray("strs", {"a", "", "ccc"})
      .KvArray<int32_t>("i32s", GgufType::kInt32, {1, -2, 3})
      .KvArray<float>("f32s", GgufType::kFloat32, {0.5f, -1.0f})
      .KvArray<uint8_t>("u8s", GgufType::kUint8, {7, 8});
  w.Tensor("a", {4}, ggml_type::kF32, Raw<float>({1, 2, 3, 4}));
  w.Tensor("b", {2, 3}, ggml_type::kF32, Raw<float>({0, 1, 2, 3, 4, 5}));
  return w.Build();
}

// ---------------------------------------------------------------------------
// Metadata.

TEST(GgufMetadata, ReadsEveryScalarType) {
  GgufFile f = GgufFile::FromBytes("rich.gguf", RichFile());
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.GetString("general.architecture"), "llama");
  EXPECT_EQ(f.GetU32("u8"), 200u);
  EXPECT_EQ(f.GetI64("i8"), -100);
  EXPECT_EQ(f.GetU32("u16"), 60000u);
  EXPECT_EQ(f.GetI64("i16"), -30000);
  EXPECT_EQ(f.GetU32("u32"), 4000000000u);
  EXPECT_EQ(f.GetI64("i32"), -2000000000);
  EXPECT_FLOAT_EQ(f.GetF32("f32"), 1.5f);
  EXPECT_TRUE(f.GetBool("bool"));
  EXPECT_EQ(f.GetI64("u64"), 1ll << 40);
  EXPECT_EQ(f.GetI64("i64"), -(1ll << 40));
  EXPECT_FLOAT_EQ(f.GetF32("f64"), 0.25f);
  EXPECT_EQ(f.metadata().at("u16").type, GgufType::kUint16);
  EXPECT_EQ(f.metadata().size(), 16u);
}

TEST(GgufMetadata, ReadsArrays) {
  GgufFile f = GgufFile::FromBytes("rich.gguf", RichFile());
  EXPECT_EQ(f.GetStringArray("strs"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f.GetI32Array("i32s"), (std::vector<int32_t>{1, -2, 3}));
  EXPECT_EQ(f.GetI32Array("u8s"), (std::vector<int32_t>{7, 8}));
  EXPECT_EQ(f.GetF32Array("f32s"), (std::vector<float>{0.5f, -1.0f}));
  EXPECT_EQ(f.metadata().at("strs").count, 3u);
  EXPECT_EQ(f.metadata().at("strs").elem_type, GgufType::kString);
}

TEST(GgufMetadata, DefaultsAndTypeErrors) {
  GgufFile f = GgufFile::FromBytes("rich.gguf", RichFile());
  EXPECT_TRUE(f.Has("u8"));
  EXPECT_FALSE(f.Has("nope"));
  EXPECT_EQ(f.GetU32("nope", 7u), 7u);
  EXPECT_EQ(f.GetString("nope", "x"), "x");
  EXPECT_FLOAT_EQ(f.GetF32("nope", 2.5f), 2.5f);
  EXPECT_FALSE(f.GetBool("nope", false));
  EXPECT_EQ(f.GetI64("nope", -3), -3);
  EXPECT_NE(ErrorOf([&] { f.GetString("nope"); }).find("rich.gguf: metadata key 'nope'"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { f.GetString("u32"); }).find("has type uint32, expected string"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { f.GetU32("i8"); }).find("does not fit in uint32"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { f.GetU32("f32"); }).find("expected an integer"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { f.GetF32("u32"); }).find("expected a float"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { f.GetStringArray("i32s"); }).find("not an array of string"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { f.GetI32Array("strs"); }).find("not an array of integers"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { f.GetU32("i32s"); }).find("is an array"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { f.GetBool("u8"); }).find("expected bool"), std::string::npos);
}

TEST(GgufMetadata, AlignmentFromMetadata) {
  GgufWriter w;
  w.Kv<uint32_t>("general.alignment", GgufType::kUint32, 64);
  w.Tensor("a", {2}, ggml_type::kF32, Raw<float>({1, 2})).Tensor("b", {1}, ggml_type::kF32, Raw<float>({3}));
  GgufFile f = GgufFile::FromBytes("t.gguf", w.Build(64));
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.Tensor("b").offset, 64u);
  EXPECT_EQ(f.Dequantize(f.Tensor("b")), std::vector<float>{3});
}

// ---------------------------------------------------------------------------
// Header.

TEST(GgufHeader, AcceptsVersion2And3) {
  EXPECT_EQ(GgufFile::FromBytes("t.gguf", RichFile(2)).version(), 2u);
  EXPECT_EQ(GgufFile::FromBytes("t.gguf", RichFile(3)).version(), 3u);
}

TEST(GgufHeader, RejectsOtherVersionsAndBadMagic) {
  EXPECT_NE(ParseError(RichFile(4)).find("unsupported GGUF version 4"), std::string::npos);
  EXPECT_NE(ParseError(RichFile(1)).find("unsupported GGUF version 1"), std::string::npos);
  EXPECT_NE(ParseError(RichFile(0x03000000)).find("big-endian"), std::string::npos);
  std::string bad = RichFile();
  bad[0] = 'X';
  EXPECT_NE(ParseError(bad).find("t.gguf: not a GGUF file: bad magic"), std::string::npos);
  EXPECT_NE(ParseError("").find("too short"), std::string::npos);
}

TEST(GgufHeader, OpenReportsMissingAndEmptyFiles) {
  EXPECT_NE(ErrorOf([] { GgufFile::Open("/nonexistent/x.gguf"); }).find("/nonexistent/x.gguf: cannot open"),
            std::string::npos);
  std::string empty = TempPath("empty.gguf");
  std::ofstream(empty).close();
  EXPECT_NE(ErrorOf([&] { GgufFile::Open(empty); }).find(empty + ": not a GGUF file"), std::string::npos);
  std::remove(empty.c_str());
}

TEST(GgufHeader, OpenMapsFile) {
  std::string path = TempPath("rich.gguf");
  std::ofstream(path, std::ios::binary) << RichFile();
  GgufFile f = GgufFile::Open(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.Dequantize(f.Tensor("b")), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  GgufFile moved = std::move(f);
  EXPECT_EQ(moved.GetString("general.architecture"), "llama");
  std::remove(path.c_str());
}

// ---------------------------------------------------------------------------
// Tensors and dequantization.

TEST(GgufTensors, InfoAndShape) {
  GgufFile f = GgufFile::FromBytes("t.gguf", RichFile());
  ASSERT_EQ(f.tensors().size(), 2u);
  const GgufTensorInfo& b = f.Tensor("b");
  EXPECT_EQ(b.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(b.numel, 6);
  EXPECT_EQ(b.nbytes, 24u);
  EXPECT_EQ(b.type, ggml_type::kF32);
  EXPECT_EQ(f.FindTensor("zzz"), nullptr);
  EXPECT_NE(ErrorOf([&] { f.Tensor("zzz"); }).find("no tensor named 'zzz'"), std::string::npos);
}

TEST(GgufTensors, HalfAndBFloat16) {
  // 1.0, -2.0, 65504 (max), 2^-24 (smallest subnormal), -0, inf.
  std::vector<uint16_t> half = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x8000, 0x7C00};
  std::vector<uint16_t> bf = {0x3F80, 0xC040, 0x0001, 0x7F80};  // 1, -3, smallest subnormal, inf.
  GgufWriter w;
  w.Tensor("h", {6}, ggml_type::kF16, Raw(half)).Tensor("bf", {4}, ggml_type::kBF16, Raw(bf));
  GgufFile f = GgufFile::FromBytes("t.gguf", w.Build());
  std::vector<float> h = f.Dequantize(f.Tensor("h"));
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], -2.0f);
  EXPECT_EQ(h[2], 65504.0f);
  EXPECT_EQ(h[3], std::ldexp(1.0f, -24));
  EXPECT_TRUE(h[4] == 0.0f && std::signbit(h[4]));
  EXPECT_TRUE(std::isinf(h[5]));
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7E00)));
  std::vector<float> b = f.Dequantize(f.Tensor("bf"));
  EXPECT_EQ(b[0], 1.0f);
  EXPECT_EQ(b[1], -3.0f);
  EXPECT_EQ(b[2], std::ldexp(1.0f, -133));
  EXPECT_TRUE(std::isinf(b[3]));
}

// Q8_0: block = fp16 d, 32 x int8; value = q * d.
TEST(GgufTensors, DequantizeQ8_0) {
  Buf blk;
  blk.Put<uint16_t>(0x3800);  // d = 0.5
  for (int j = 0; j < 32; ++j) blk.Put<int8_t>(static_cast<int8_t>(j * 8 - 128));
  blk.Put<uint16_t>(0xC000);  // d = -2
  for (int j = 0; j < 32; ++j) blk.Put<int8_t>(static_cast<int8_t>(j));
  GgufWriter w;
  w.Tensor("q", {64}, ggml_type::kQ8_0, blk.bytes);
  GgufFile f = GgufFile::FromBytes("t.gguf", w.Build());
  EXPECT_EQ(f.Tensor("q").nbytes, 68u);
  std::vector<float> v = f.Dequantize(f.Tensor("q"));
  ASSERT_EQ(v.size(), 64u);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(v[j], (j * 8 - 128) * 0.5f) << j;
  for (int j = 0; j < 32; ++j) EXPECT_EQ(v[32 + j], j * -2.0f) << j;
}

// Q4_0: fp16 d, 16 bytes; low nibbles are elements 0..15, high nibbles 16..31; value = (q - 8) * d.
TEST(GgufTensors, DequantizeQ4_0) {
  Buf blk;
  blk.Put<uint16_t>(0x4000);  // d = 2
  for (int j = 0; j < 16; ++j) blk.Put<uint8_t>(static_cast<uint8_t>(j | ((15 - j) << 4)));
  GgufWriter w;
  w.Tensor("q", {32}, ggml_type::kQ4_0, blk.bytes);
  GgufFile f = GgufFile::FromBytes("t.gguf", w.Build());
  std::vector<float> v = f.Dequantize(f.Tensor("q"));
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(v[j], (j - 8) * 2.0f) << j;
    EXPECT_EQ(v[16 + j], (15 - j - 8) * 2.0f) << j;
  }
}

// Q4_1: fp16 d, fp16 m, 16 bytes; value = q * d + m.
TEST(GgufTensors, DequantizeQ4_1) {
  Buf blk;
  blk.Put<uint16_t>(0x3400).Put<uint16_t>(0xBC00);  // d = 0.25, m = -1
  for (int j = 0; j < 16; ++j) blk.Put<uint8_t>(static_cast<uint8_t>(j | ((15 - j) << 4)));
  GgufWriter w;
  w.Tensor("q", {32}, ggml_type::kQ4_1, blk.bytes);
  GgufFile f = GgufFile::FromBytes("t.gguf", w.Build());
  std::vector<float> v = f.Dequantize(f.Tensor("q"));
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(v[j], j * 0.25f - 1.0f) << j;
    EXPECT_EQ(v[16 + j], (15 - j) * 0.25f - 1.0f) << j;
  }
}

TEST(GgufTensors, UnsupportedTypeNamesTensorAndType) {
  GgufWriter w;
  w.Tensor("blk.0.ffn_up.weight", {256}, 12, std::string(144, '\0'));  // Q4_K: 256 per 144-byte block.
  GgufFile f = GgufFile::FromBytes("t.gguf", w.Build());
  EXPECT_EQ(f.Tensor("blk.0.ffn_up.weight").nbytes, 144u);
  std::string msg = ErrorOf([&] { f.Dequantize(f.Tensor("blk.0.ffn_up.weight")); });
  EXPECT_NE(msg.find("'blk.0.ffn_up.weight' has ggml type Q4_K"), std::string::npos) << msg;
}

TEST(GgufTensors, ForeignInfoIsCheckedBeforeReading) {
  GgufFile f = GgufFile::FromBytes("t.gguf", RichFile());
  GgufTensorInfo forged = f.Tensor("b");
  forged.numel = 1 << 20;  // More elements than bytes.
  EXPECT_NE(ErrorOf([&] { f.Dequantize(forged); }).find("elements of F32 but 24 bytes"), std::string::npos);
  forged = f.Tensor("b");
  forged.offset = 1ull << 62;
  EXPECT_NE(ErrorOf([&] { f.TensorData(forged); }).find("outside the file"), std::string::npos);
}

// ---------------------------------------------------------------------------
// Hostile input.

TEST(GgufHostile, TruncationAtEveryOffsetThrows) {
  const std::string full = RichFile();
  for (size_t n = 0; n < full.size(); ++n) {
    EXPECT_THROW(GgufFile::FromBytes("t.gguf", full.substr(0, n)), Error) << "prefix " << n;
  }
  std::string msg = ParseError(full.substr(0, full.size() - 1));
  EXPECT_NE(msg.find("t.gguf: truncated: tensor 'b' data ends at byte " + std::to_string(full.size()) +
                     " but file has " + std::to_string(full.size() - 1) + " bytes"),
            std::string::npos)
      << msg;
}

TEST(GgufHostile, TruncatedFilesOnDisk) {
  const std::string full = RichFile();
  std::string path = TempPath("trunc.gguf");
  for (size_t n : {size_t{3}, size_t{20}, full.size() / 2, full.size() - 1}) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << full.substr(0, n);
    std::string msg = ErrorOf([&] { GgufFile::Open(path); });
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
  }
  std::remove(path.c_str());
}

// A header with the given counts, then `body`, then 64 zero bytes (so that
// the counts alone do not already exceed the file).
std::string Header(uint64_t n_tensors, uint64_t n_kv, const std::string& body) {
  Buf b;
  b.bytes = "GGUF";
  b.Put<uint32_t>(3).Put<uint64_t>(n_tensors).Put<uint64_t>(n_kv);
  return b.bytes + body + std::string(64, '\0');
}

TEST(GgufHostile, ForgedCountsAreErrorsNotAllocations) {
  Buf huge_str;
  huge_str.Put<uint64_t>(1ull << 62);
  EXPECT_NE(ParseError(Header(0, 1, huge_str.bytes)).find("truncated: key of metadata entry 0"), std::string::npos);
  Buf huge_arr;
  huge_arr.Str("k").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(1ull << 61);
  EXPECT_NE(ParseError(Header(0, 1, huge_arr.bytes)).find("array 'k' claims 2305843009213693952"), std::string::npos);
  Buf huge_num;
  huge_num.Str("k").Put<uint32_t>(9).Put<uint32_t>(10).Put<uint64_t>(~0ull / 4);
  EXPECT_NE(ParseError(Header(0, 1, huge_num.bytes)).find("array 'k' claims"), std::string::npos);
  EXPECT_NE(ParseError(Header(0, 1ull << 60, "")).find("metadata count 1152921504606846976 exceeds"),
            std::string::npos);
  EXPECT_NE(ParseError(Header(~0ull, 0, "")).find("tensor count"), std::string::npos);
  Buf elem_len;
  elem_len.Str("k").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(1).Put<uint64_t>(~0ull);
  EXPECT_NE(ParseError(Header(0, 1, elem_len.bytes)).find("truncated: element 0 of 'k'"), std::string::npos);
}

// One tensor info (after zero kvs) with the given fields, then `tail` bytes.
std::string OneTensor(const std::vector<uint64_t>& dims, uint32_t type, uint64_t offset, size_t tail) {
  Buf b;
  b.Str("t").Put<uint32_t>(dims.size());
  for (uint64_t d : dims) b.Put<uint64_t>(d);
  b.Put<uint32_t>(type).Put<uint64_t>(offset);
  return Header(1, 0, b.bytes) + std::string(tail, '\0');
}

TEST(GgufHostile, ForgedTensorInfos) {
  EXPECT_NE(ParseError(OneTensor({1, 1, 1, 1, 1}, 0, 0, 4)).find("'t' has 5 dimensions"), std::string::npos);
  EXPECT_NE(ParseError(OneTensor({1ull << 32, 1ull << 32}, 0, 0, 4)).find("overflows int64"), std::string::npos);
  EXPECT_NE(ParseError(OneTensor({~0ull}, 0, 0, 4)).find("overflows int64"), std::string::npos);
  EXPECT_NE(ParseError(OneTensor({4}, 99, 0, 4)).find("unknown ggml type 99"), std::string::npos);
  EXPECT_NE(ParseError(OneTensor({33}, ggml_type::kQ8_0, 0, 64)).find("not a multiple of the block size 32"),
            std::string::npos);
  EXPECT_NE(ParseError(OneTensor({4}, 0, 8, 64)).find("not a multiple of the alignment 32"), std::string::npos);
  EXPECT_NE(ParseError(OneTensor({4}, 0, ~0ull - 31, 64)).find("past any file size"), std::string::npos);
  EXPECT_NE(ParseError(OneTensor({1ull << 40}, 0, 0, 4)).find("truncated: tensor 't' data ends at byte"),
            std::string::npos);
}

TEST(GgufHostile, ForgedMetadata) {
  Buf nested;
  nested.Str("k").Put<uint32_t>(9).Put<uint32_t>(9).Put<uint64_t>(0);
  EXPECT_NE(ParseError(Header(0, 1, nested.bytes)).find("nesting unsupported"), std::string::npos);
  Buf bad_type;
  bad_type.Str("k").Put<uint32_t>(13).Put<uint64_t>(0);
  EXPECT_NE(ParseError(Header(0, 1, bad_type.bytes)).find("'k' has unknown value type 13"), std::string::npos);
  Buf dup;
  dup.Str("k").Put<uint32_t>(0).Put<uint8_t>(1).Str("k").Put<uint32_t>(0).Put<uint8_t>(2);
  EXPECT_NE(ParseError(Header(0, 2, dup.bytes)).find("duplicate metadata key 'k'"), std::string::npos);
  GgufWriter w;
  w.Kv<uint32_t>("general.alignment", GgufType::kUint32, 48);
  EXPECT_NE(ParseError(w.Build()).find("not a power of two"), std::string::npos);
  GgufWriter d;
  d.Tensor("x", {1}, 0, Raw<float>({1})).Tensor("x", {1}, 0, Raw<float>({2}));
  EXPECT_NE(ParseError(d.Build()).find("duplicate tensor 'x'"), std::string::npos);
}

TEST(GgufHostile, RandomCorruptionNeverCrashes) {
  const std::string full = RichFile();
  std::mt19937 rng(455);
  int parsed = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes = full;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) bytes[rng() % bytes.size()] ^= static_cast<char>(1u << (rng() % 8));
    try {
      GgufFile f = GgufFile::FromBytes("t.gguf", bytes);
      for (const GgufTensorInfo& t : f.tensors()) {
        if (t.numel <= (1 << 20) && t.type == ggml_type::kF32) f.Dequantize(t);
      }
      for (const auto& kv : f.metadata()) {
        if (kv.second.type == GgufType::kArray && kv.second.elem_type == GgufType::kString) {
          f.GetStringArray(kv.first);
        }
      }
      ++parsed;
    } catch (const Error&) {
    }
  }
  EXPECT_GT(parsed, 0);  // Flips in data and values leave a valid file.
}

// ---------------------------------------------------------------------------
// The real model, when scripts/fetch_model.sh has cached it.

std::string CachedModelPath() {
  const char* cache = std::getenv("DFAR_CACHE");
  std::string root = cache != nullptr && *cache != '\0' ? cache : std::string(DFAR_SOURCE_DIR) + "/.cache";
  return root + "/models/smollm2-135m-instruct.gguf";
}

TEST(GgufRealModel, SmolLM2) {
  const std::string path = CachedModelPath();
  if (!std::ifstream(path)) GTEST_SKIP() << path << " is absent; run scripts/fetch_model.sh";
  GgufFile f = GgufFile::Open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.GetString("general.architecture"), "llama");
  EXPECT_EQ(f.GetU32("llama.block_count"), 30u);
  EXPECT_EQ(f.GetU32("llama.embedding_length"), 576u);
  EXPECT_EQ(f.GetStringArray("tokenizer.ggml.tokens").size(), 49152u);
  EXPECT_EQ(f.tensors().size(), 272u);
  const GgufTensorInfo& emb = f.Tensor("token_embd.weight");
  EXPECT_EQ(emb.shape, (std::vector<int64_t>{576, 49152}));
  EXPECT_EQ(emb.type, ggml_type::kQ8_0);
  std::vector<float> e = f.Dequantize(emb);
  for (float x : e) ASSERT_TRUE(std::isfinite(x));
  // References: gguf-py 0.19 quants.dequantize on the same file (float32; same formulas, so exact).
  EXPECT_FLOAT_EQ(e[0], -0.10654449462890625f);
  EXPECT_FLOAT_EQ(e[576 * 1000 + 17], 0.2138824462890625f);
  EXPECT_FLOAT_EQ(e[576 * 49151 + 575], -0.0417022705078125f);
  const GgufTensorInfo& q = f.Tensor("blk.0.attn_q.weight");
  EXPECT_EQ(q.type, ggml_type::kQ4_1);
  std::vector<float> qv = f.Dequantize(q);
  EXPECT_FLOAT_EQ(qv[0], -0.0963134765625f);
  EXPECT_FLOAT_EQ(qv[16], -0.22314453125f);
  EXPECT_FLOAT_EQ(qv[17], 0.2841796875f);
  EXPECT_FLOAT_EQ(qv[576 * 576 - 1], -0.255859375f);
  EXPECT_FLOAT_EQ(f.Dequantize(f.Tensor("output_norm.weight"))[0], 1.7578125f);
}

}  // namespace
}  // namespace dfar
