#include "dfar/data/example.h"

#include "dfar/core/error.h"

namespace dfar {

const char* LabelWord(int label) {
  if (label == kEthical) return "ethical";
  if (label == kUnethical) return "unethical";
  DFAR_THROW("label ", label, " is neither ", kEthical, " (ethical) nor ", kUnethical, " (unethical)");
}

}  // namespace dfar
