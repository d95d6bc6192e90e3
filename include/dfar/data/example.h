// One labelled statement of DFAR (or of a dataset mapped onto it).
#pragma once

#include <cstdint>
#include <string>

namespace dfar {

// Label values are fixed by the paper: 0 = ethical, 1 = unethical.
constexpr int kEthical = 0;
constexpr int kUnethical = 1;

struct Example {
  int64_t index = 0;  // Position in the file's data rows (0-based); stable id for eval ordering.
  int64_t line = 0;   // 1-based source line, for messages.
  std::string statement;
  int label = kEthical;
  std::string reason;  // Empty when the dataset has no reason column.
};

// "ethical" or "unethical"; throws for any other value.
const char* LabelWord(int label);

}  // namespace dfar
