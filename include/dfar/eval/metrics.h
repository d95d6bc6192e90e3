// Evaluation metrics: classification, reason overlap, and the MAR proxy.
//
// Owns: the numbers an eval report carries, computed from plain vectors of
// labels and strings. Torch-free. Definitions, conventions and the BLEU
// smoothing choice are in docs/metrics.md; in short:
// - Labels are kEthical (0), kUnethical (1) or kUnparseable (-1, predictions
//   only). An unparseable prediction counts as wrong everywhere: in accuracy,
//   in recall (it is in the gold class's support) and in the MAR proxy.
// - A ratio with a zero denominator is 0 (scikit-learn's zero_division=0).
// - Text metrics use WordTokens: lowercase ASCII, runs of letters and digits
//   (bytes >= 0x80 stay inside words, so UTF-8 words are kept whole).
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

// Lowercased word tokens (see above).
std::vector<std::string> WordTokens(std::string_view text);

// Length of the longest common subsequence of two token sequences.
int64_t LcsLength(const std::vector<std::string>& a, const std::vector<std::string>& b);

// ROUGE-L F1 (beta = 1) of one candidate against one reference: from
// P = LCS/|cand| and R = LCS/|ref|, F1 = 2PR/(P+R); 0 if either is empty.
double RougeLF1(std::string_view candidate, std::string_view reference);

struct BleuScore {
  double bleu = 0;
  std::array<double, 4> precisions{};  // Modified (clipped) n-gram precisions, n = 1..4.
  double brevity_penalty = 0;
  int64_t candidate_words = 0;
  int64_t reference_words = 0;
};

// Corpus-level BLEU-4 (Papineni et al. 2002), one reference per candidate,
// uniform weights, no smoothing: any zero n-gram precision gives BLEU 0.
BleuScore CorpusBleu(const std::vector<std::string>& candidates, const std::vector<std::string>& references);

// Generated reasons against human reasons, over the pairs whose human reason
// is non-empty (a dataset without reasons yields pairs == 0).
struct ReasonMetrics {
  int64_t pairs = 0;
  double rouge_l_f1 = 0;  // Mean per-pair ROUGE-L F1.
  BleuScore bleu;
  double mean_generated_words = 0;  // Over the same pairs.
  double mean_human_words = 0;
};

ReasonMetrics ComputeReasonMetrics(const std::vector<std::string>& generated, const std::vector<std::string>& human);

// Mean word count of `texts` (0 for none).
double MeanWords(const std::vector<std::string>& texts);

// The MAR proxy of L+R outputs: an output is misaligned if its reason is
// missing (empty after the verdict) or its verdict is not the gold label
// (unparseable included). rate = misaligned / n.
struct MarProxy {
  int64_t n = 0;
  int64_t missing_reason = 0;
  int64_t wrong_verdict = 0;
  int64_t misaligned = 0;  // Either of the two (counted once).
  double rate = 0;
};

MarProxy ComputeMarProxy(const std::vector<int>& gold, const std::vector<int>& predicted,
                         const std::vector<std::string>& reasons);

}  // namespace dfar
