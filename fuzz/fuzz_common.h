// Shared by the libFuzzer targets: what counts as a finding.
//
// A parser of untrusted bytes may reject its input only by throwing
// dfar::Error (a message naming the file and what is wrong). Anything else is
// a bug the fuzzer reports: a crash or sanitizer finding, a leak, any other
// exception escaping (the CLI would print "internal error"), or an
// allocation above libFuzzer's -malloc_limit_mb (an unbounded allocation).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "dfar/core/error.h"

namespace dfar::fuzz {

inline std::string Bytes(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

// Runs `parse`; dfar::Error is the expected way to say no.
template <typename F>
void Expect(F parse) {
  try {
    parse();
  } catch (const Error&) {
  }
}

}  // namespace dfar::fuzz
