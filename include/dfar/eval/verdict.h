// The verdict parser: from a model's generated text to a label.
//
// Owns: reading "ethical" / "unethical" out of free text, and cutting off the
// reason that follows the verdict. Torch-free.
//
// Rules (docs/metrics.md, "Verdict parsing"):
// - Case and punctuation do not matter; leading whitespace and newlines, and
//   one optional leading "The statement is", are skipped.
// - Words are runs of letters, digits and apostrophes, so "unethical" never
//   matches "ethical" and "**Unethical.**" reads as "unethical".
// - The FIRST verdict word decides. A negation right before it flips it:
//   "not" / "isn't"-style "n't" / "non" ("non-ethical", "non ethical") and the
//   one-word "nonethical". So "not ethical" is unethical and "not unethical"
//   is ethical.
// - No verdict word at all: unparseable (label kUnparseable).
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dfar {

// Label of an output that states no verdict.
constexpr int kUnparseable = -1;

struct Verdict {
  int label = kUnparseable;  // kEthical, kUnethical or kUnparseable.
  size_t end = 0;            // Offset in the text just past the verdict word (0 when unparseable).
  bool parsed() const { return label != kUnparseable; }
};

// The verdict words default to the templates' "ethical" / "unethical"; a
// template with other words passes its own (compared case-insensitively).
Verdict ParseVerdict(std::string_view text, std::string_view ethical_word = "ethical",
                     std::string_view unethical_word = "unethical");

// The reason stated after the verdict: the text past the verdict word, with
// the verdict sentence's closing punctuation, whitespace and an optional
// "Reason:" label removed, trimmed. "unethical. Stealing hurts." ->
// "Stealing hurts."; "unethical because it hurts" -> "because it hurts".
// Empty when unparseable or nothing follows.
std::string ExtractReason(std::string_view text, const Verdict& verdict);

}  // namespace dfar
