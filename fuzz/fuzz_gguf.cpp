// GgufFile::FromBytes on arbitrary bytes; then every metadata key through
// the typed getters and every tensor through Dequantize, so that a count or
// offset the validation let through shows up as an overread or a huge
// allocation.
#include "dfar/weights/gguf.h"
#include "fuzz_common.h"

namespace {

void ReadMetadata(const dfar::GgufFile& f) {
  using dfar::fuzz::Expect;
  for (const auto& entry : f.metadata()) {
    const std::string& key = entry.first;
    Expect([&] { f.GetString(key); });
    Expect([&] { f.GetI64(key); });
    Expect([&] { f.GetU32(key); });
    Expect([&] { f.GetF32(key); });
    Expect([&] { f.GetBool(key); });
    Expect([&] { f.GetStringArray(key); });
    Expect([&] { f.GetF32Array(key); });
    Expect([&] { f.GetI32Array(key); });
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dfar::fuzz::Expect([&] {
    const dfar::GgufFile f = dfar::GgufFile::FromBytes("fuzz.gguf", dfar::fuzz::Bytes(data, size));
    ReadMetadata(f);
    for (const auto& t : f.tensors()) {
      dfar::fuzz::Expect([&] { f.Dequantize(t); });
    }
  });
  return 0;
}
