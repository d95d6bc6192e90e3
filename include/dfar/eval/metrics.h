// Evaluation metrics: classification and reason overlap.
//
// Owns: the numbers an eval report carries, computed from plain vectors of
// labels and strings. Torch-free. Definitions, conventions and the BLEU
// smoothing choice are in docs/metrics.md; in short:
// - Labels are kEthical (0), kUnethical (1) or kUnparseable (-1, predictions
//   only). An unparseable prediction counts as wrong everywhere: in accuracy,
//   in recall (it is in the gold class's support).
// - A ratio with a zero denominator is 0 (scikit-learn's zero_division=0).
// - Reason overlap (ROUGE-L, BLEU, chrF) reproduces the standard tools with
//   their defaults, each with its own tokenizer: Google's rouge_score for
//   ROUGE-L, sacrebleu for BLEU and chrF (versions and the golden test:
//   docs/metrics.md, tests/eval/text_metrics_test.cpp). Word counts (reason
//   length, "has a reason") use WordTokens.
// - Text is UTF-8. Where the tools see Unicode characters, so does dfar; a
//   byte sequence that is not UTF-8 reads as U+FFFD, one per maximal invalid
//   subpart (what Python's bytes.decode('utf-8', 'replace') gives).
// Failure: dfar::Error when vector lengths differ or a label is out of range.
// Thread-safety: pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dfar {

struct ClassScores {
  double precision = 0;
  double recall = 0;
  double f1 = 0;
  int64_t support = 0;    // Gold examples of the class.
  int64_t predicted = 0;  // Predictions of the class.
};

// Column index of unparseable predictions in the confusion matrix.
constexpr int kUnparseableColumn = 2;

struct ClassificationMetrics {
  int64_t n = 0;
  int64_t correct = 0;
  double accuracy = 0;
  // confusion[gold][pred]; pred column kUnparseableColumn counts unparseable outputs.
  std::array<std::array<int64_t, 3>, 2> confusion{};
  std::array<ClassScores, 2> per_class{};  // Indexed by label.
  double macro_f1 = 0;                     // Mean of the two classes' F1.
  int64_t unparseable = 0;
  double unparseable_rate = 0;
};

ClassificationMetrics ComputeClassification(const std::vector<int>& gold, const std::vector<int>& predicted);

// Lowercased word tokens: runs of ASCII letters and digits, lowercased;
// bytes >= 0x80 stay inside words, so UTF-8 words are kept whole. For
// counting words, not for scoring overlap.
std::vector<std::string> WordTokens(std::string_view text);

// The tokens rouge_score's default tokenizer (use_stemmer=False) gives:
// Python's str.lower(), every character other than [a-z0-9] becomes a space,
// the tokens are the remaining runs. So "isn't" -> {"isn", "t"}, "café" ->
// {"caf"}, and non-ASCII letters separate words. str.lower() maps exactly two
// non-ASCII characters to ASCII letters (Unicode 14): U+0130 'İ' -> "i" +
// U+0307 (a separator) and U+212A KELVIN SIGN -> "k"; both are reproduced.
std::vector<std::string> RougeTokens(std::string_view text);

// Length of the longest common subsequence of two token sequences.
int64_t LcsLength(const std::vector<std::string>& a, const std::vector<std::string>& b);

// ROUGE-L F (beta = 1) of one candidate against one reference, as
// rouge_score's RougeScorer(['rougeL'], use_stemmer=False)
// .score(target=reference, prediction=candidate).fmeasure: over RougeTokens,
// P = LCS/|cand|, R = LCS/|ref|, F = 2PR/(P+R); 0 if either side has no
// token or P + R = 0.
double RougeLF1(std::string_view candidate, std::string_view reference);

// sacrebleu's default BLEU tokenization of one segment: rstrip (Unicode
// whitespace), the mteval-v13a rules of sacrebleu's Tokenizer13a (drop
// "<skipped>" and "-\n", "\n" -> " ", unescape &quot; &amp; &lt; &gt;; pad
// the symbols {|}~[\]^_`!"#$%&()*+:;<=>?@/ with spaces; split '.' and ','
// from a non-digit on either side; split '-' after a digit), then split on
// Unicode whitespace (Python's str.split()). Case is kept.
std::vector<std::string> Bleu13aTokens(std::string_view text);

// BLEU-4 as sacrebleu reports it, on the 0..1 scale (sacrebleu's score / 100).
struct BleuScore {
  double bleu = 0;
  // n = 1..4, as sacrebleu's BLEUScore.precisions / 100: matches/totals, or
  // the exp-smoothed value where matches is 0; all 0 when nothing matches.
  std::array<double, 4> precisions{};
  double brevity_penalty = 0;        // 1 if c >= r, exp(1 - r/c) if 0 < c < r, 0 if c = 0 < r.
  int64_t candidate_words = 0;       // c: Bleu13aTokens of the candidates (sacrebleu's sys_len).
  int64_t reference_words = 0;       // r: Bleu13aTokens of the references (ref_len).
  std::array<int64_t, 4> matches{};  // Clipped n-gram matches (sacrebleu's counts).
  std::array<int64_t, 4> totals{};   // Candidate n-grams.
};

// Corpus-level BLEU-4 (Papineni et al. 2002), one reference per candidate,
// equal to sacrebleu's BLEU() defaults (tokenize='13a', smooth_method='exp',
// lowercase=False, effective_order=False): .corpus_score(cands, [refs]).
// Matches and totals are summed over pairs before dividing. Smoothing
// (Chen & Cherry 2014, method 3, as mteval-v13a): the k-th order whose
// matches are 0 gets precision 1/(2^k * totals). BLEU = BP * geometric mean
// of the four precisions; 0 when no n-gram of any order matches, and 0 when
// the candidates have no 4-gram at all (sacrebleu floors log 0).
// An empty corpus (which sacrebleu rejects) gives BLEU 0.
BleuScore CorpusBleu(const std::vector<std::string>& candidates, const std::vector<std::string>& references);

// Sentence BLEU, equal to sacrebleu.sentence_bleu(candidate, [reference])
// with its defaults: as CorpusBleu over one pair, but with effective order
// (the mean runs over the orders n for which the candidate has n-grams).
BleuScore SentenceBleu(std::string_view candidate, std::string_view reference);

// chrF (Popović 2015) as sacrebleu's CHRF() defaults compute it (char order
// 6, word order 0, beta 2, whitespace removed, case kept, no eps smoothing),
// on the 0..1 scale (sacrebleu's score / 100). Characters are Unicode code
// points of the text with every Unicode whitespace character removed. For
// each order n = 1..6, hyp = candidate n-grams (counted as 0 when the
// reference has no n-gram of that order), ref = reference n-grams, match =
// clipped matches; at corpus level the three are summed over pairs. The
// orders with hyp > 0 and ref > 0 are effective; P and R are the means of
// match/hyp and match/ref over them, chrF = (1 + b^2)PR / (b^2 P + R) with
// b = 2 (0 when P + R = 0 or no order is effective).
struct ChrfScore {
  double chrf = 0;
  double precision = 0;  // P above.
  double recall = 0;     // R above.
  int effective_order = 0;
  std::array<int64_t, 6> hyp_ngrams{};  // Indexed by n - 1.
  std::array<int64_t, 6> ref_ngrams{};
  std::array<int64_t, 6> matches{};
};

// Corpus chrF: sacrebleu CHRF().corpus_score(cands, [refs]). Empty corpus: 0.
ChrfScore CorpusChrf(const std::vector<std::string>& candidates, const std::vector<std::string>& references);

// Sentence chrF: sacrebleu CHRF().sentence_score(candidate, [reference]).
ChrfScore SentenceChrf(std::string_view candidate, std::string_view reference);

// Generated reasons against human reasons, over the pairs whose human reason
// is non-empty (a dataset without reasons yields pairs == 0).
struct ReasonMetrics {
  int64_t pairs = 0;
  double rouge_l_f1 = 0;            // Mean per-pair ROUGE-L F1.
  BleuScore bleu;                   // CorpusBleu over the pairs.
  ChrfScore chrf;                   // CorpusChrf over the pairs.
  double mean_generated_words = 0;  // Over the same pairs.
  double mean_human_words = 0;
};

ReasonMetrics ComputeReasonMetrics(const std::vector<std::string>& generated, const std::vector<std::string>& human);

// Mean word count of `texts` (0 for none).
double MeanWords(const std::vector<std::string>& texts);

}  // namespace dfar
