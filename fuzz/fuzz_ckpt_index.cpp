// A checkpoint's index.json through the reader's checks: size, nesting,
// JSON, then the whole schema (format, version, tensors, chunk tiling).
#include "../src/ckpt/checkpoint_internal.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dfar::fuzz::Expect([&] {
    const nlohmann::json index = dfar::ckpt::ParseIndexText(dfar::fuzz::Bytes(data, size), "fuzz/index.json");
    dfar::ckpt::ParseIndex(index, "fuzz/index.json");
  });
  return 0;
}
