#include "dfar/eval/metrics.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <string>
#include <unordered_map>

#include "dfar/core/error.h"
#include "dfar/data/example.h"
#include "dfar/eval/verdict.h"

namespace dfar {
namespace {

double Ratio(double num, double den) {
  return den == 0 ? 0.0 : num / den;
}

double F1(double p, double r) {
  return Ratio(2 * p * r, p + r);
}

void CheckLabel(int label, bool prediction, size_t i) {
  const bool ok = label == kEthical || label == kUnethical || (prediction && label == kUnparseable);
  DFAR_CHECK(ok, prediction ? "prediction " : "gold label ", i, " is ", label, "; expected 0 or 1",
             prediction ? " or -1 (unparseable)" : "");
}

bool IsTokenByte(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return u >= 0x80 || std::isalnum(u);
}

// ---- UTF-8 and Python's notion of whitespace --------------------------------
//
// The reference tools are Python: they see code points, lowercase with
// str.lower() and split with str.split(). Decoding once into code points keeps
// every rule below a rule about characters, as in their source.

constexpr char32_t kReplacement = 0xFFFD;

// Decodes the character at s[i] and advances i. A sequence that is not
// well-formed UTF-8 (Unicode Table 3-7) yields U+FFFD for its maximal
// subpart, as Python's decode(errors='replace') does, so "\xE2\x84!" is
// U+FFFD then '!'.
char32_t NextCodePoint(std::string_view s, size_t& i) {
  const unsigned char lead = static_cast<unsigned char>(s[i++]);
  if (lead < 0x80) return lead;
  int length = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // Allowed range of the first continuation byte.
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 1;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 2;
    if (lead == 0xE0) lo = 0xA0;  // No overlong forms.
    if (lead == 0xED) hi = 0x9F;  // No surrogates.
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 3;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;  // Nothing above U+10FFFF.
  } else {
    return kReplacement;
  }
  char32_t cp = lead & (0x3F >> length);
  for (int k = 0; k < length; ++k, lo = 0x80, hi = 0xBF) {
    if (i >= s.size()) return kReplacement;
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < lo || c > hi) return kReplacement;  // s[i] starts the next character.
    cp = (cp << 6) | (c & 0x3F);
    ++i;
  }
  return cp;
}

std::u32string DecodeUtf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) out.push_back(NextCodePoint(s, i));
  return out;
}

void AppendUtf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string EncodeUtf8(std::u32string_view text) {
  std::string out;
  for (char32_t cp : text) AppendUtf8(out, cp);
  return out;
}

// Python's str.isspace(), which str.split() and str.rstrip() use (the
// generator checks it over all of Unicode 14: these 29 code points).
bool IsPySpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Python's str.split(): runs of non-whitespace, as UTF-8.
std::vector<std::string> PySplit(std::u32string_view text) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && IsPySpace(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !IsPySpace(text[i])) ++i;
    if (i > start) words.push_back(EncodeUtf8(text.substr(start, i - start)));
  }
  return words;
}

bool IsAsciiDigit(char32_t c) {
  return c >= U'0' && c <= U'9';
}

// ---- sacrebleu's 13a tokenizer (tokenizer_13a.py, tokenizer_re.py) ----------

// str.replace: every non-overlapping occurrence, left to right.
std::u32string ReplaceAll(const std::u32string& s, std::u32string_view from, std::u32string_view to) {
  std::u32string out;
  size_t i = 0, j = 0;
  while ((j = s.find(from.data(), i, from.size())) != std::u32string::npos) {
    out.append(s, i, j - i).append(to);
    i = j + from.size();
  }
  out.append(s, i, std::u32string::npos);
  return out;
}

// The character class [\{-\~\[-\` -\&\(-\+\:-\@\/]: ASCII symbols except
// ' , - . which the later rules treat by context.
bool Is13aSymbol(char32_t c) {
  return (c >= U'{' && c <= U'~') || (c >= U'[' && c <= U'`') || (c >= U' ' && c <= U'&') || (c >= U'(' && c <= U'+') ||
         (c >= U':' && c <= U'@') || c == U'/';
}

// re.sub(r'(A)(B)', before + r'\1' + mid + r'\2' + after, s) for one-character
// classes A and B: matches are found left to right and do not overlap, so
// "a.." splits only the first period here (the next rule gets the second).
template <typename First, typename Second>
std::u32string SubPairs(const std::u32string& s, First first, Second second, std::u32string_view before,
                        std::u32string_view mid, std::u32string_view after) {
  std::u32string out;
  size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && first(s[i]) && second(s[i + 1])) {
      out.append(before).append(1, s[i]).append(mid).append(1, s[i + 1]).append(after);
      i += 2;
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

std::u32string Tokenize13a(std::u32string line) {
  while (!line.empty() && IsPySpace(line.back())) line.pop_back();  // BLEU._preprocess_segment's rstrip().
  line = ReplaceAll(line, U"<skipped>", U"");
  line = ReplaceAll(line, U"-\n", U"");
  line = ReplaceAll(line, U"\n", U" ");
  if (line.find(U'&') != std::u32string::npos) {
    line = ReplaceAll(line, U"&quot;", U"\"");
    line = ReplaceAll(line, U"&amp;", U"&");
    line = ReplaceAll(line, U"&lt;", U"<");
    line = ReplaceAll(line, U"&gt;", U">");
  }
  std::u32string padded = U" ";
  for (char32_t c : line) {
    if (Is13aSymbol(c)) {
      padded.append({U' ', c, U' '});
    } else {
      padded.push_back(c);
    }
  }
  padded.push_back(U' ');
  const auto not_digit = [](char32_t c) { return !IsAsciiDigit(c); };
  const auto period_comma = [](char32_t c) { return c == U'.' || c == U','; };
  padded = SubPairs(padded, not_digit, period_comma, U"", U" ", U" ");  // ([^0-9])([\.,]) -> \1 \2_
  padded = SubPairs(padded, period_comma, not_digit, U" ", U" ", U"");  // ([\.,])([^0-9]) -> _\1 \2
  padded = SubPairs(
      padded, IsAsciiDigit, [](char32_t c) { return c == U'-'; }, U"", U" ", U" ");  // ([0-9])(-)
  return padded;
}

// ---- BLEU ------------------------------------------------------------------

constexpr int kBleuOrder = 4;

// sacrebleu's sufficient statistics of one segment or a corpus.
struct BleuStats {
  int64_t sys_len = 0, ref_len = 0;
  std::array<int64_t, kBleuOrder> correct{}, total{};
};

// All n-grams, n = 1..4, of a token sequence, keyed by the tokens joined with
// ' ' (no 13a token contains whitespace, so the key is unambiguous).
std::unordered_map<std::string, int64_t> WordNgrams(const std::vector<std::string>& tokens, size_t n) {
  std::unordered_map<std::string, int64_t> counts;
  for (size_t i = 0; i + n <= tokens.size(); ++i) {
    std::string key = tokens[i];
    for (size_t k = 1; k < n; ++k) key.append(1, ' ').append(tokens[i + k]);
    ++counts[key];
  }
  return counts;
}

void AddSegmentStats(std::string_view candidate, std::string_view reference, BleuStats& stats) {
  const auto cand = Bleu13aTokens(candidate), ref = Bleu13aTokens(reference);
  stats.sys_len += static_cast<int64_t>(cand.size());
  stats.ref_len += static_cast<int64_t>(ref.size());
  for (size_t n = 1; n <= kBleuOrder; ++n) {
    const auto ref_counts = WordNgrams(ref, n);
    for (const auto& [gram, count] : WordNgrams(cand, n)) {
      stats.total[n - 1] += count;
      auto it = ref_counts.find(gram);
      if (it != ref_counts.end()) stats.correct[n - 1] += std::min(count, it->second);
    }
  }
}

// sacrebleu's utils.my_log: log with log(0) floored to -9999999999.
double FlooredLog(double x) {
  return x == 0.0 ? -9999999999.0 : std::log(x);
}

// BLEU.compute_bleu with smooth_method='exp'. The arithmetic runs on
// sacrebleu's 0..100 scale, in its order, so that the result is the same
// double up to the final division by 100.
BleuScore BleuFromStats(const BleuStats& st, bool effective_order) {
  BleuScore s;
  s.candidate_words = st.sys_len;
  s.reference_words = st.ref_len;
  s.matches = st.correct;
  s.totals = st.total;
  s.brevity_penalty = 1.0;
  if (st.sys_len < st.ref_len) {
    s.brevity_penalty = st.sys_len > 0 ? std::exp(1 - static_cast<double>(st.ref_len) / st.sys_len) : 0.0;
  }
  if (std::all_of(st.correct.begin(), st.correct.end(), [](int64_t c) { return c == 0; })) return s;
  std::array<double, kBleuOrder> p{};  // Percent.
  double smooth = 1.0;
  int order = kBleuOrder;
  for (int n = 1; n <= kBleuOrder; ++n) {
    const double total = static_cast<double>(st.total[n - 1]);
    if (st.total[n - 1] == 0) break;
    if (effective_order) order = n;
    if (st.correct[n - 1] == 0) {
      smooth *= 2;
      p[n - 1] = 100. / (smooth * total);
    } else {
      p[n - 1] = 100. * static_cast<double>(st.correct[n - 1]) / total;
    }
  }
  double log_sum = 0;
  for (int n = 0; n < order; ++n) log_sum += FlooredLog(p[n]);
  s.bleu = s.brevity_penalty * std::exp(log_sum / order) / 100;
  for (int n = 0; n < kBleuOrder; ++n) s.precisions[n] = p[n] / 100;
  return s;
}

// ---- chrF --------------------------------------------------------------------

constexpr int kChrfOrder = 6;
constexpr double kChrfBeta = 2;

struct ChrfStats {
  std::array<int64_t, kChrfOrder> hyp{}, ref{}, match{};
};

std::unordered_map<std::u32string, int64_t> CharNgrams(const std::u32string& chars, size_t n) {
  std::unordered_map<std::u32string, int64_t> counts;
  for (size_t i = 0; i + n <= chars.size(); ++i) ++counts[chars.substr(i, n)];
  return counts;
}

// extract_all_char_ngrams with whitespace=False: ''.join(line.split()).
std::u32string CharsWithoutSpace(std::string_view text) {
  std::u32string chars = DecodeUtf8(text);
  chars.erase(std::remove_if(chars.begin(), chars.end(), IsPySpace), chars.end());
  return chars;
}

// CHRF._get_match_statistics per order, added to `stats`.
void AddChrfSegment(std::string_view candidate, std::string_view reference, ChrfStats& stats) {
  const std::u32string cand = CharsWithoutSpace(candidate), ref = CharsWithoutSpace(reference);
  for (size_t n = 1; n <= kChrfOrder; ++n) {
    const auto ref_counts = CharNgrams(ref, n);
    int64_t hyp = 0, match = 0, ref_total = 0;
    for (const auto& [gram, count] : CharNgrams(cand, n)) {
      hyp += count;
      auto it = ref_counts.find(gram);
      if (it != ref_counts.end()) match += std::min(count, it->second);
    }
    for (const auto& entry : ref_counts) ref_total += entry.second;
    // sacrebleu: "Don't count hits if no reference exists for that n-gram".
    stats.hyp[n - 1] += ref_counts.empty() ? 0 : hyp;
    stats.ref[n - 1] += ref_total;
    stats.match[n - 1] += match;
  }
}

// CHRF._compute_f_score with eps_smoothing=False, in sacrebleu's order of
// operations, without its final * 100.
ChrfScore ChrfFromStats(const ChrfStats& st) {
  ChrfScore s;
  s.hyp_ngrams = st.hyp;
  s.ref_ngrams = st.ref;
  s.matches = st.match;
  for (int i = 0; i < kChrfOrder; ++i) {
    if (st.hyp[i] == 0 || st.ref[i] == 0) continue;
    s.precision += static_cast<double>(st.match[i]) / static_cast<double>(st.hyp[i]);
    s.recall += static_cast<double>(st.match[i]) / static_cast<double>(st.ref[i]);
    ++s.effective_order;
  }
  if (s.effective_order == 0) return s;
  s.precision /= s.effective_order;
  s.recall /= s.effective_order;
  if (s.precision + s.recall == 0) return s;
  const double factor = kChrfBeta * kChrfBeta;
  s.chrf = (1 + factor) * s.precision * s.recall;
  s.chrf /= factor * s.precision + s.recall;
  return s;
}

}  // namespace

ClassificationMetrics ComputeClassification(const std::vector<int>& gold, const std::vector<int>& predicted) {
  DFAR_CHECK(gold.size() == predicted.size(), "metrics: ", gold.size(), " gold labels but ", predicted.size(),
             " predictions");
  ClassificationMetrics m;
  m.n = static_cast<int64_t>(gold.size());
  for (size_t i = 0; i < gold.size(); ++i) {
    CheckLabel(gold[i], false, i);
    CheckLabel(predicted[i], true, i);
    const int column = predicted[i] == kUnparseable ? kUnparseableColumn : predicted[i];
    ++m.confusion[gold[i]][column];
  }
  for (int c = 0; c < 2; ++c) {
    ClassScores& s = m.per_class[c];
    const int64_t tp = m.confusion[c][c];
    s.support = m.confusion[c][0] + m.confusion[c][1] + m.confusion[c][kUnparseableColumn];
    s.predicted = m.confusion[0][c] + m.confusion[1][c];
    s.precision = Ratio(tp, s.predicted);
    s.recall = Ratio(tp, s.support);
    s.f1 = F1(s.precision, s.recall);
    m.correct += tp;
    m.unparseable += m.confusion[c][kUnparseableColumn];
  }
  m.accuracy = Ratio(m.correct, m.n);
  m.macro_f1 = (m.per_class[0].f1 + m.per_class[1].f1) / 2;
  m.unparseable_rate = Ratio(m.unparseable, m.n);
  return m;
}

std::vector<std::string> WordTokens(std::string_view text) {
  std::vector<std::string> words;
  std::string current;
  for (char c : text) {
    if (IsTokenByte(c)) {
      current += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!current.empty()) {
      words.push_back(std::move(current));
      current.clear();
    }
  }
  if (!current.empty()) words.push_back(std::move(current));
  return words;
}

std::vector<std::string> RougeTokens(std::string_view text) {
  std::vector<std::string> tokens;
  std::string current;
  const auto flush = [&] {
    if (!current.empty()) tokens.push_back(std::move(current));
    current.clear();
  };
  for (char32_t c : DecodeUtf8(text)) {
    if (c >= U'A' && c <= U'Z') {
      current += static_cast<char>(c - U'A' + 'a');
    } else if ((c >= U'a' && c <= U'z') || IsAsciiDigit(c)) {
      current += static_cast<char>(c);
    } else if (c == 0x212A) {  // KELVIN SIGN: lower() is 'k'.
      current += 'k';
    } else if (c == 0x0130) {  // 'İ': lower() is "i\u0307", and U+0307 is a separator.
      current += 'i';
      flush();
    } else {
      flush();
    }
  }
  flush();
  return tokens;
}

int64_t LcsLength(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  // One rolling row: O(|a||b|) time, O(|b|) memory.
  std::vector<int64_t> row(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    int64_t diagonal = 0;
    for (size_t j = 1; j <= b.size(); ++j) {
      const int64_t up = row[j];
      row[j] = a[i - 1] == b[j - 1] ? diagonal + 1 : std::max(row[j], row[j - 1]);
      diagonal = up;
    }
  }
  return row[b.size()];
}

double RougeLF1(std::string_view candidate, std::string_view reference) {
  const auto cand = RougeTokens(candidate), ref = RougeTokens(reference);
  if (cand.empty() || ref.empty()) return 0.0;
  const double lcs = static_cast<double>(LcsLength(ref, cand));
  // rouge_score's _score_lcs and scoring.fmeasure, operation for operation.
  return F1(lcs / static_cast<double>(cand.size()), lcs / static_cast<double>(ref.size()));
}

std::vector<std::string> Bleu13aTokens(std::string_view text) {
  return PySplit(Tokenize13a(DecodeUtf8(text)));
}

BleuScore CorpusBleu(const std::vector<std::string>& candidates, const std::vector<std::string>& references) {
  DFAR_CHECK(candidates.size() == references.size(), "BLEU: ", candidates.size(), " candidates but ", references.size(),
             " references");
  BleuStats stats;
  for (size_t i = 0; i < candidates.size(); ++i) AddSegmentStats(candidates[i], references[i], stats);
  return BleuFromStats(stats, /*effective_order=*/false);
}

BleuScore SentenceBleu(std::string_view candidate, std::string_view reference) {
  BleuStats stats;
  AddSegmentStats(candidate, reference, stats);
  return BleuFromStats(stats, /*effective_order=*/true);
}

ChrfScore CorpusChrf(const std::vector<std::string>& candidates, const std::vector<std::string>& references) {
  DFAR_CHECK(candidates.size() == references.size(), "chrF: ", candidates.size(), " candidates but ", references.size(),
             " references");
  ChrfStats stats;
  for (size_t i = 0; i < candidates.size(); ++i) AddChrfSegment(candidates[i], references[i], stats);
  return ChrfFromStats(stats);
}

ChrfScore SentenceChrf(std::string_view candidate, std::string_view reference) {
  ChrfStats stats;
  AddChrfSegment(candidate, reference, stats);
  return ChrfFromStats(stats);
}

double MeanWords(const std::vector<std::string>& texts) {
  double words = 0;
  for (const auto& t : texts) words += static_cast<double>(WordTokens(t).size());
  return Ratio(words, static_cast<double>(texts.size()));
}

ReasonMetrics ComputeReasonMetrics(const std::vector<std::string>& generated, const std::vector<std::string>& human) {
  DFAR_CHECK(generated.size() == human.size(), "reason metrics: ", generated.size(), " generated reasons but ",
             human.size(), " human reasons");
  std::vector<std::string> cands, refs;
  double rouge_sum = 0;
  for (size_t i = 0; i < human.size(); ++i) {
    if (WordTokens(human[i]).empty()) continue;
    cands.push_back(generated[i]);
    refs.push_back(human[i]);
    rouge_sum += RougeLF1(generated[i], human[i]);
  }
  ReasonMetrics m;
  m.pairs = static_cast<int64_t>(refs.size());
  m.rouge_l_f1 = Ratio(rouge_sum, static_cast<double>(m.pairs));
  m.bleu = CorpusBleu(cands, refs);
  m.chrf = CorpusChrf(cands, refs);
  m.mean_generated_words = MeanWords(cands);
  m.mean_human_words = MeanWords(refs);
  return m;
}

}  // namespace dfar
