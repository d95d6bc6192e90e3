// LoadConfigText (YAML -> typed, validated Config) on arbitrary text, then
// an override built from the same bytes, and the round trip through YAML.
#include "dfar/core/config.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = dfar::fuzz::Bytes(data, size);
  dfar::fuzz::Expect([&] {
    const dfar::Config config = dfar::LoadConfigText(text, "fuzz.yaml");
    // Whatever was accepted must print and load back.
    dfar::LoadConfigText(dfar::ConfigToYaml(config), "fuzz.yaml (round trip)");
  });
  dfar::fuzz::Expect([&] {
    dfar::Config config;
    dfar::ApplyOverride(config, "train.lr=" + text);
  });
  return 0;
}
