// SafetensorsFile::FromBytes (8-byte header length + JSON header) on
// arbitrary bytes; every tensor it accepts is then read whole, so that an
// offset the header check let through shows up as an ASan overread.
#include "dfar/weights/safetensors.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dfar::fuzz::Expect([&] {
    const auto file = dfar::SafetensorsFile::FromBytes("fuzz.safetensors", dfar::fuzz::Bytes(data, size));
    for (const auto& entry : file->tensors()) {
      const dfar::SafetensorInfo& info = entry.second;
      const uint8_t* p = file->Data(info);
      volatile uint8_t sink = 0;
      for (uint64_t i = 0; i < info.end - info.begin; ++i) sink = sink ^ p[i];
      dfar::fuzz::Expect([&] { file->ToFloat(info.name); });
    }
  });
  return 0;
}
