// ParseCsv on arbitrary bytes, with the default delimiter and with tabs.
#include "dfar/data/csv.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes = dfar::fuzz::Bytes(data, size);
  dfar::fuzz::Expect([&] {
    const dfar::CsvTable table = dfar::ParseCsv(bytes, "fuzz.csv");
    for (const auto& name : {"Statement", "Label", "Reason"}) {
      dfar::fuzz::Expect([&] { table.Column(name); });
    }
  });
  dfar::fuzz::Expect([&] { dfar::ParseCsv(bytes, "fuzz.tsv", '\t'); });
  return 0;
}
