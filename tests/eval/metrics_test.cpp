// Every metric against values computed by hand (the arithmetic is in the comments).
#include "dfar/eval/metrics.h"

#include <gtest/gtest.h>

#include <cmath>

#include "dfar/core/error.h"
#include "dfar/data/example.h"
#include "dfar/eval/verdict.h"

namespace dfar {
namespace {

constexpr double kTol = 1e-12;

TEST(MetricsTest, ClassificationByHand) {
  const std::vector<int> gold = {0, 0, 0, 1, 1, 1, 1, 0};
  const std::vector<int> pred = {0, 0, -1, 1, 1, 0, -1, 0};
  const ClassificationMetrics m = ComputeClassification(gold, pred);
  // gold 0 -> predicted 0,0,?,0 ; gold 1 -> predicted 1,1,0,?
  EXPECT_EQ(m.confusion[0], (std::array<int64_t, 3>{3, 0, 1}));
  EXPECT_EQ(m.confusion[1], (std::array<int64_t, 3>{1, 2, 1}));
  EXPECT_EQ(m.n, 8);
  EXPECT_EQ(m.correct, 5);
  EXPECT_NEAR(m.accuracy, 5.0 / 8, kTol);
  EXPECT_EQ(m.unparseable, 2);
  EXPECT_NEAR(m.unparseable_rate, 0.25, kTol);
  // Ethical: TP 3, predicted 4, support 4 -> P = R = F1 = 0.75.
  EXPECT_NEAR(m.per_class[0].precision, 0.75, kTol);
  EXPECT_NEAR(m.per_class[0].recall, 0.75, kTol);
  EXPECT_NEAR(m.per_class[0].f1, 0.75, kTol);
  EXPECT_EQ(m.per_class[0].support, 4);
  // Unethical: TP 2, predicted 2, support 4 -> P 1, R 0.5, F1 2/3.
  EXPECT_NEAR(m.per_class[1].precision, 1.0, kTol);
  EXPECT_NEAR(m.per_class[1].recall, 0.5, kTol);
  EXPECT_NEAR(m.per_class[1].f1, 2.0 / 3, kTol);
  EXPECT_EQ(m.per_class[1].predicted, 2);
  EXPECT_NEAR(m.macro_f1, (0.75 + 2.0 / 3) / 2, kTol);
}

TEST(MetricsTest, ZeroDivisionIsZero) {
  const ClassificationMetrics m = ComputeClassification({0, 0}, {0, 0});
  EXPECT_NEAR(m.accuracy, 1.0, kTol);
  EXPECT_EQ(m.per_class[1].support, 0);
  EXPECT_EQ(m.per_class[1].precision, 0.0);
  EXPECT_EQ(m.per_class[1].f1, 0.0);
  EXPECT_NEAR(m.macro_f1, 0.5, kTol);
  const ClassificationMetrics empty = ComputeClassification({}, {});
  EXPECT_EQ(empty.accuracy, 0.0);
}

TEST(MetricsTest, ClassificationRejectsBadInput) {
  EXPECT_THROW(ComputeClassification({0, 1}, {0}), Error);
  EXPECT_THROW(ComputeClassification({2}, {0}), Error);
  EXPECT_THROW(ComputeClassification({-1}, {0}), Error);  // Gold is never unparseable.
  EXPECT_THROW(ComputeClassification({0}, {5}), Error);
}

TEST(MetricsTest, WordTokens) {
  EXPECT_EQ(WordTokens("Stealing, is WRONG!"), (std::vector<std::string>{"stealing", "is", "wrong"}));
  EXPECT_EQ(WordTokens("  "), std::vector<std::string>{});
  EXPECT_EQ(WordTokens("caf\xC3\xA9 ok"), (std::vector<std::string>{"caf\xC3\xA9", "ok"}));
}

TEST(MetricsTest, Lcs) {
  EXPECT_EQ(LcsLength(WordTokens("a b c d"), WordTokens("b d e")), 2);
  EXPECT_EQ(LcsLength(WordTokens("a b"), {}), 0);
  EXPECT_EQ(LcsLength(WordTokens("x a y b z"), WordTokens("a b")), 2);
}

TEST(MetricsTest, RougeLByHand) {
  // LCS "the cat on the mat" = 5 of 6 and 6 words: P = R = F1 = 5/6.
  EXPECT_NEAR(RougeLF1("the cat sat on the mat", "the cat is on the mat"), 5.0 / 6, kTol);
  // LCS "b d" = 2: P = 2/4, R = 2/3, F1 = 2 * (1/2)(2/3) / (7/6) = 4/7.
  EXPECT_NEAR(RougeLF1("A B C D", "B D E"), 4.0 / 7, kTol);
  EXPECT_NEAR(RougeLF1("Stealing, is WRONG!", "stealing is wrong"), 1.0, kTol);
  EXPECT_EQ(RougeLF1("", "something"), 0.0);
  EXPECT_EQ(RougeLF1("something", ""), 0.0);
}

TEST(MetricsTest, BleuIdentical) {
  const BleuScore s = CorpusBleu({"the cat sat on the mat"}, {"the cat sat on the mat"});
  EXPECT_NEAR(s.bleu, 1.0, kTol);
  EXPECT_NEAR(s.brevity_penalty, 1.0, kTol);
}

TEST(MetricsTest, BleuBrevityPenalty) {
  // Every n-gram of the 5-word candidate matches; c = 5 < r = 6: BP = exp(1 - 6/5).
  const BleuScore s = CorpusBleu({"the cat sat on the"}, {"the cat sat on the mat"});
  for (double p : s.precisions) EXPECT_NEAR(p, 1.0, kTol);
  EXPECT_NEAR(s.brevity_penalty, std::exp(-0.2), kTol);
  EXPECT_NEAR(s.bleu, std::exp(-0.2), kTol);
}

TEST(MetricsTest, BleuClipsCountsAndSmoothsZeroOrders) {
  // "the" x7 against a reference with two "the": p1 = 2/7; no bigram, trigram
  // or 4-gram matches, so sacrebleu's exp smoothing gives the k-th zero order
  // 1 / (2^k * totals): p2 = 1/12, p3 = 1/20, p4 = 1/32 (sacrebleu: 7.8098...).
  const BleuScore s = CorpusBleu({"the the the the the the the"}, {"the cat is on the mat"});
  EXPECT_NEAR(s.precisions[0], 2.0 / 7, kTol);
  EXPECT_EQ(s.matches[1], 0);
  EXPECT_NEAR(s.precisions[1], 1.0 / 12, kTol);
  EXPECT_NEAR(s.precisions[3], 1.0 / 32, kTol);
  EXPECT_NEAR(s.bleu, std::pow(2.0 / 7 / 12 / 20 / 32, 0.25), kTol);
  EXPECT_NEAR(s.brevity_penalty, 1.0, kTol);  // c = 7 > r = 6.
}

TEST(MetricsTest, BleuIsCorpusLevel) {
  // Counts are summed over pairs before dividing:
  // p1 = (5 + 4) / 10, p2 = (4 + 3) / 8, p3 = (3 + 2) / 6, p4 = (2 + 1) / 4;
  // c = 10, r = 11: BP = exp(1 - 11/10).
  const BleuScore s = CorpusBleu({"a b c d e", "a b c d x"}, {"a b c d e", "a b c d y z"});
  EXPECT_NEAR(s.precisions[0], 0.9, kTol);
  EXPECT_NEAR(s.precisions[1], 7.0 / 8, kTol);
  EXPECT_NEAR(s.precisions[2], 5.0 / 6, kTol);
  EXPECT_NEAR(s.precisions[3], 0.75, kTol);
  EXPECT_EQ(s.candidate_words, 10);
  EXPECT_EQ(s.reference_words, 11);
  const double expected = std::exp(-0.1) * std::pow(0.9 * (7.0 / 8) * (5.0 / 6) * 0.75, 0.25);
  EXPECT_NEAR(s.bleu, expected, kTol);
}

TEST(MetricsTest, BleuEmpty) {
  EXPECT_EQ(CorpusBleu({}, {}).bleu, 0.0);
  EXPECT_EQ(CorpusBleu({""}, {"a b c d"}).bleu, 0.0);
  EXPECT_THROW(CorpusBleu({"a"}, {}), Error);
}

TEST(MetricsTest, ReasonMetricsSkipMissingHumanReasons) {
  const ReasonMetrics m = ComputeReasonMetrics({"the cat sat on the mat", "x"}, {"the cat is on the mat", ""});
  EXPECT_EQ(m.pairs, 1);
  EXPECT_NEAR(m.rouge_l_f1, 5.0 / 6, kTol);
  EXPECT_NEAR(m.mean_generated_words, 6.0, kTol);
  EXPECT_NEAR(m.mean_human_words, 6.0, kTol);
  EXPECT_EQ(m.bleu.reference_words, 6);
  EXPECT_EQ(ComputeReasonMetrics({"a"}, {""}).pairs, 0);
}

TEST(MetricsTest, RougeIsTheMeanOverPairs) {
  // (5/6 + 4/7 + 0) / 3.
  const ReasonMetrics m =
      ComputeReasonMetrics({"the cat sat on the mat", "A B C D", ""}, {"the cat is on the mat", "B D E", "anything"});
  EXPECT_NEAR(m.rouge_l_f1, (5.0 / 6 + 4.0 / 7) / 3, kTol);
  EXPECT_NEAR(m.mean_generated_words, 10.0 / 3, kTol);
}

TEST(MetricsTest, MeanWords) {
  EXPECT_NEAR(MeanWords({"a b", "c", ""}), 1.0, kTol);
  EXPECT_EQ(MeanWords({}), 0.0);
}

}  // namespace
}  // namespace dfar
