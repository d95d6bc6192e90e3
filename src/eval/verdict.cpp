#include "dfar/eval/verdict.h"

#include <cctype>
#include <vector>

#include "dfar/data/example.h"

namespace dfar {
namespace {

// ASCII-only folding is enough: the verdict words are ASCII, and bytes of
// multi-byte UTF-8 characters are never letters here, so they split words.
char Lower(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

bool IsWordChar(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return u < 0x80 && (std::isalnum(u) || c == '\'');
}

bool IsSpace(char c) {
  return std::isspace(static_cast<unsigned char>(c)) != 0;
}

struct Word {
  std::string text;  // Lowercased.
  size_t begin = 0;
  size_t end = 0;
};

// Models often write the typographic apostrophe (U+2019) in "isn’t".
constexpr std::string_view kCurlyApostrophe = "\xE2\x80\x99";

// Length of the word character at text[i] (1, or 3 for U+2019), 0 if none.
size_t WordCharLength(std::string_view text, size_t i) {
  if (IsWordChar(text[i])) return 1;
  return text.substr(i, kCurlyApostrophe.size()) == kCurlyApostrophe ? kCurlyApostrophe.size() : 0;
}

std::vector<Word> SplitWords(std::string_view text, size_t from) {
  std::vector<Word> words;
  size_t i = from;
  while (i < text.size()) {
    if (WordCharLength(text, i) == 0) {
      ++i;
      continue;
    }
    Word w;
    w.begin = i;
    for (size_t n; i < text.size() && (n = WordCharLength(text, i)) > 0; i += n)
      w.text += n == 1 ? Lower(text[i]) : '\'';
    w.end = i;
    words.push_back(std::move(w));
  }
  return words;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (Lower(a[i]) != Lower(b[i])) return false;
  return true;
}

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool IsNegation(const std::string& w) {
  return w == "not" || w == "non" || EndsWith(w, "n't");
}

size_t SkipSpace(std::string_view text, size_t i) {
  while (i < text.size() && IsSpace(text[i])) ++i;
  return i;
}

// Offset after leading whitespace and the optional answer prefix.
size_t SkipPreamble(std::string_view text, std::string_view prefix) {
  size_t i = SkipSpace(text, 0);
  if (!prefix.empty() && text.size() - i >= prefix.size() && EqualsIgnoreCase(text.substr(i, prefix.size()), prefix)) {
    const size_t after = i + prefix.size();
    if (after == text.size() || !IsWordChar(text[after])) i = after;
  }
  return i;
}

bool IsSentenceEnd(char c) {
  return c == '.' || c == '!' || c == '?' || c == '\n';
}

// End of the first sentence that starts at `from`: the first terminator
// after the first word character (leading newlines and "**" do not end it).
size_t FirstSentenceEnd(std::string_view text, size_t from) {
  bool started = false;
  for (size_t i = from; i < text.size(); ++i) {
    if (WordCharLength(text, i) > 0) started = true;
    if (started && IsSentenceEnd(text[i])) return i;
  }
  return text.size();
}

// kEthical / kUnethical for a verdict word (possibly with a glued "non"
// prefix), kUnparseable for any other word.
int WordLabel(const std::string& w, const std::string& ethical, const std::string& unethical, bool* negated) {
  *negated = false;
  if (w == ethical) return kEthical;
  if (w == unethical) return kUnethical;
  if (w == "non" + ethical) {
    *negated = true;
    return kEthical;
  }
  return kUnparseable;
}

std::string LowerCopy(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Lower(c);
  return out;
}

}  // namespace

bool VerdictSentenceEnded(std::string_view text, std::string_view answer_prefix) {
  // Whether the answer prefix is skipped depends on the character after it:
  // until that one exists, a later character could still change the verdict.
  if (text.size() <= SkipSpace(text, 0) + answer_prefix.size()) return false;
  return FirstSentenceEnd(text, SkipPreamble(text, answer_prefix)) < text.size();
}

Verdict ParseVerdict(std::string_view text, std::string_view ethical_word, std::string_view unethical_word,
                     std::string_view answer_prefix) {
  const std::string ethical = LowerCopy(ethical_word), unethical = LowerCopy(unethical_word);
  const size_t from = SkipPreamble(text, answer_prefix);
  const std::string_view sentence = text.substr(0, FirstSentenceEnd(text, from));
  const std::vector<Word> words = SplitWords(sentence, from);
  Verdict v;
  bool said[2] = {false, false};
  for (size_t i = 0; i < words.size(); ++i) {
    bool negated = false;
    int label = WordLabel(words[i].text, ethical, unethical, &negated);
    if (label == kUnparseable) continue;
    if (i > 0 && IsNegation(words[i - 1].text)) negated = !negated;
    if (negated) label = label == kEthical ? kUnethical : kEthical;
    if (!said[0] && !said[1]) v.end = words[i].end;
    said[label] = true;
  }
  if (said[0] && said[1]) return Verdict{kUnparseable, 0, VerdictProblem::kBothVerdicts};
  if (!said[0] && !said[1]) return Verdict{};
  v.label = said[kEthical] ? kEthical : kUnethical;
  v.problem = VerdictProblem::kNone;
  return v;
}

std::string AnswerPrefix(const std::string& target_l) {
  const size_t at = target_l.find("{label}");
  std::string_view prefix(target_l.data(), at == std::string::npos ? 0 : at);
  while (!prefix.empty() && IsSpace(prefix.front())) prefix.remove_prefix(1);
  while (!prefix.empty() && IsSpace(prefix.back())) prefix.remove_suffix(1);
  return std::string(prefix);
}

std::string ExtractReason(std::string_view text, const Verdict& verdict) {
  if (!verdict.parsed() || verdict.end >= text.size()) return "";
  std::string_view rest = text.substr(verdict.end);
  // The verdict sentence's own punctuation ("unethical." / "unethical:" / "**").
  while (!rest.empty() && (IsSpace(rest.front()) || std::ispunct(static_cast<unsigned char>(rest.front()))))
    rest.remove_prefix(1);
  constexpr std::string_view kLabel = "reason:";
  if (rest.size() >= kLabel.size() && EqualsIgnoreCase(rest.substr(0, kLabel.size()), kLabel)) {
    rest.remove_prefix(kLabel.size());
    while (!rest.empty() && IsSpace(rest.front())) rest.remove_prefix(1);
  }
  while (!rest.empty() && IsSpace(rest.back())) rest.remove_suffix(1);
  return std::string(rest);
}

}  // namespace dfar
