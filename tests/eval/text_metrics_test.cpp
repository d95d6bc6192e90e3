// ROUGE-L, BLEU and chrF against the standard tools (rouge_score, sacrebleu)
// through the committed golden, plus cases whose arithmetic is in the comments.
// The golden is made by tools/make_text_metric_goldens.py.
#include "dfar/eval/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "dfar/core/error.h"

namespace dfar {
namespace {

// Tolerance of every golden comparison, on the 0..1 scale. Both sides compute
// the same formula from the same integer counts, in the same order of double
// operations (the C++ follows the Python source line by line), so the only
// differences left are libm's last bit in exp/log on another platform and
// sacrebleu's scale: the golden stores 100 * x, the test divides by 100
// (each a rounding of at most 1 ulp, ~1e-16 here). 1e-12 leaves that room and
// is still far below any real difference (one n-gram more or less in the
// golden's corpora moves BLEU or chrF by more than 1e-5).
constexpr double kGoldenTol = 1e-12;
constexpr double kTol = 1e-12;  // Hand-computed cases: same reasoning.

nlohmann::json LoadGolden() {
  const std::string path = std::string(DFAR_SOURCE_DIR) + "/tests/fixtures/text_metrics/golden.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  nlohmann::json j = nlohmann::json::parse(in);
  if (j.at("format") != "dfar-text-metric-golden" || j.at("version") != 1) {
    throw std::runtime_error(path + ": not a dfar-text-metric-golden version 1");
  }
  return j;
}

const nlohmann::json& Golden() {
  static const nlohmann::json golden = LoadGolden();
  return golden;
}

std::vector<std::string> Split(const std::string& s) {
  std::istringstream in(s);  // The golden's 13a strings are ASCII-space separated.
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// Records the largest difference seen, so that the test prints it.
struct MaxDiff {
  double value = 0;
  void Check(double got, double want, const std::string& what) {
    const double d = std::fabs(got - want);
    value = std::max(value, d);
    EXPECT_NEAR(got, want, kGoldenTol) << what;
  }
};

void CheckBleu(const BleuScore& got, const nlohmann::json& want, const std::string& what, MaxDiff& diff) {
  diff.Check(got.bleu, want.at("score").get<double>() / 100, what + " bleu");
  diff.Check(got.brevity_penalty, want.at("bp").get<double>(), what + " bp");
  for (size_t n = 0; n < 4; ++n) {
    diff.Check(got.precisions[n], want.at("precisions")[n].get<double>() / 100, what + " p" + std::to_string(n + 1));
    EXPECT_EQ(got.matches[n], want.at("counts")[n].get<int64_t>()) << what << " n=" << n + 1;
    EXPECT_EQ(got.totals[n], want.at("totals")[n].get<int64_t>()) << what << " n=" << n + 1;
  }
  EXPECT_EQ(got.candidate_words, want.at("sys_len").get<int64_t>()) << what;
  EXPECT_EQ(got.reference_words, want.at("ref_len").get<int64_t>()) << what;
}

TEST(TextMetricsGoldenTest, HasEnoughPairs) {
  EXPECT_GE(Golden().at("pairs").size(), 60u);
  EXPECT_GE(Golden().at("corpora").size(), 5u);
}

TEST(TextMetricsGoldenTest, RougeMatchesRougeScore) {
  MaxDiff diff;
  for (const auto& p : Golden().at("pairs")) {
    const std::string cand = p.at("candidate"), ref = p.at("reference");
    const std::string what = "pair " + std::to_string(p.at("id").get<int>()) + " \"" + cand + "\"";
    EXPECT_EQ(RougeTokens(cand), p.at("rouge_tokens_candidate").get<std::vector<std::string>>()) << what;
    EXPECT_EQ(RougeTokens(ref), p.at("rouge_tokens_reference").get<std::vector<std::string>>()) << what;
    diff.Check(RougeLF1(cand, ref), p.at("rouge_l").at("fmeasure").get<double>(), what);
  }
  std::cout << "# ROUGE-L max |dfar - rouge_score| = " << diff.value << "\n";
}

TEST(TextMetricsGoldenTest, SentenceScoresMatchSacrebleu) {
  MaxDiff bleu, chrf;
  for (const auto& p : Golden().at("pairs")) {
    const std::string cand = p.at("candidate"), ref = p.at("reference");
    const std::string what = "pair " + std::to_string(p.at("id").get<int>()) + " \"" + cand + "\"";
    EXPECT_EQ(Bleu13aTokens(cand), Split(p.at("bleu_13a_candidate"))) << what;
    EXPECT_EQ(Bleu13aTokens(ref), Split(p.at("bleu_13a_reference"))) << what;
    CheckBleu(SentenceBleu(cand, ref), p.at("sentence_bleu"), what, bleu);
    chrf.Check(SentenceChrf(cand, ref).chrf, p.at("sentence_chrf").get<double>() / 100, what + " chrF");
  }
  std::cout << "# sentence BLEU max |dfar - sacrebleu/100| = " << bleu.value << "\n"
            << "# sentence chrF max |dfar - sacrebleu/100| = " << chrf.value << "\n";
}

TEST(TextMetricsGoldenTest, CorpusScoresMatchSacrebleu) {
  const auto& pairs = Golden().at("pairs");
  MaxDiff bleu, chrf;
  for (const auto& c : Golden().at("corpora")) {
    std::vector<std::string> cands, refs;
    for (const auto& id : c.at("ids")) {
      cands.push_back(pairs.at(id.get<size_t>()).at("candidate"));
      refs.push_back(pairs.at(id.get<size_t>()).at("reference"));
    }
    const std::string what = "corpus " + c.at("name").get<std::string>();
    CheckBleu(CorpusBleu(cands, refs), c.at("bleu"), what, bleu);
    chrf.Check(CorpusChrf(cands, refs).chrf, c.at("chrf").get<double>() / 100, what + " chrF");
  }
  std::cout << "# corpus BLEU max |dfar - sacrebleu/100| = " << bleu.value << "\n"
            << "# corpus chrF max |dfar - sacrebleu/100| = " << chrf.value << "\n";
}

TEST(TextMetricsTest, RougeTokensFollowRougeScore) {
  using V = std::vector<std::string>;
  EXPECT_EQ(RougeTokens("It isn't WRONG!"), (V{"it", "isn", "t", "wrong"}));
  EXPECT_EQ(RougeTokens("caf\xC3\xA9 well-being 3.5"), (V{"caf", "well", "being", "3", "5"}));
  EXPECT_EQ(RougeTokens("\xE2\x84\xAA"
                        "elvin"),
            (V{"kelvin"}));                                        // U+212A lowercases to 'k'.
  EXPECT_EQ(RougeTokens("\xC4\xB0stanbul"), (V{"i", "stanbul"}));  // U+0130 -> "i" U+0307.
  EXPECT_EQ(RougeTokens(" ... "), V{});
}

TEST(TextMetricsTest, RougeLByHand) {
  // LCS "b d" = 2: P = 2/4, R = 2/3, F = 2 (1/2)(2/3) / (7/6) = 4/7.
  EXPECT_NEAR(RougeLF1("A B C D", "B D E"), 4.0 / 7, kTol);
  // rouge_score splits "isn't" into "isn" "t": cand {it isn t wrong}, ref
  // {it is not wrong}: LCS "it wrong" = 2, P = R = F = 1/2.
  EXPECT_NEAR(RougeLF1("It isn't wrong.", "it is not wrong"), 0.5, kTol);
  EXPECT_EQ(RougeLF1("", "something"), 0.0);
  EXPECT_EQ(RougeLF1("...", "something"), 0.0);
}

TEST(TextMetricsTest, Bleu13aTokens) {
  using V = std::vector<std::string>;
  EXPECT_EQ(Bleu13aTokens("It isn't wrong, is it?"), (V{"It", "isn't", "wrong", ",", "is", "it", "?"}));
  // '.' and ',' stay inside numbers; '-' splits after a digit only.
  EXPECT_EQ(Bleu13aTokens("1,000.5 well-being 10-year"), (V{"1,000.5", "well-being", "10", "-", "year"}));
  EXPECT_EQ(Bleu13aTokens("a &amp; b<skipped>\n"), (V{"a", "&", "b"}));
  EXPECT_EQ(Bleu13aTokens("\xC2\xA0x\xE3\x80\x80y\xE2\x80\x83"), (V{"x", "y"}));  // NBSP, U+3000, U+2003.
}

TEST(TextMetricsTest, BleuIdenticalAndBrevity) {
  const BleuScore same = CorpusBleu({"the cat sat on the mat"}, {"the cat sat on the mat"});
  EXPECT_NEAR(same.bleu, 1.0, kTol);
  EXPECT_NEAR(same.brevity_penalty, 1.0, kTol);
  // Every n-gram of the 5-word candidate matches; c = 5 < r = 6: BP = exp(1 - 6/5).
  const BleuScore short_cand = CorpusBleu({"the cat sat on the"}, {"the cat sat on the mat"});
  for (double p : short_cand.precisions) EXPECT_NEAR(p, 1.0, kTol);
  EXPECT_NEAR(short_cand.bleu, std::exp(-0.2), kTol);
}

TEST(TextMetricsTest, BleuExpSmoothing) {
  // cand "a b c x" vs ref "a b c d": matches 3, 2, 1, 0 of totals 4, 3, 2, 1.
  // The first zero order gets 1 / (2 * total) = 1/2, so
  // BLEU = (3/4 * 2/3 * 1/2 * 1/2)^(1/4) = (1/8)^(1/4); c = r: BP = 1.
  const BleuScore s = CorpusBleu({"a b c x"}, {"a b c d"});
  EXPECT_EQ(s.matches, (std::array<int64_t, 4>{3, 2, 1, 0}));
  EXPECT_EQ(s.totals, (std::array<int64_t, 4>{4, 3, 2, 1}));
  EXPECT_NEAR(s.precisions[3], 0.5, kTol);
  EXPECT_NEAR(s.bleu, std::pow(1.0 / 8, 0.25), kTol);
  // Two zero orders: 1/(2 * 2) then 1/(4 * 1). cand "a b x y" vs "a b c d":
  // matches 2, 1, 0, 0 of 4, 3, 2, 1: (1/2 * 1/3 * 1/4 * 1/4)^(1/4).
  EXPECT_NEAR(CorpusBleu({"a b x y"}, {"a b c d"}).bleu, std::pow(1.0 / 96, 0.25), kTol);
}

TEST(TextMetricsTest, BleuZeroCases) {
  EXPECT_EQ(CorpusBleu({}, {}).bleu, 0.0);
  EXPECT_EQ(CorpusBleu({""}, {"a b c d"}).bleu, 0.0);
  EXPECT_EQ(CorpusBleu({""}, {"a b c d"}).brevity_penalty, 0.0);
  EXPECT_EQ(CorpusBleu({"x y z w"}, {"a b c d"}).bleu, 0.0);  // Nothing matches.
  // Matches, but no 4-gram anywhere: sacrebleu's floored log makes it 0.
  EXPECT_EQ(CorpusBleu({"a b c"}, {"a b c"}).bleu, 0.0);
  EXPECT_THROW(CorpusBleu({"a"}, {}), Error);
}

TEST(TextMetricsTest, SentenceBleuUsesEffectiveOrder) {
  // "a b c" has no 4-gram: the mean runs over orders 1..3, all exact.
  EXPECT_NEAR(SentenceBleu("a b c", "a b c").bleu, 1.0, kTol);
  // cand "a b x": matches 2, 1, 0 of 3, 2, 1 -> (2/3 * 1/2 * 1/2)^(1/3).
  EXPECT_NEAR(SentenceBleu("a b x", "a b c").bleu, std::cbrt(1.0 / 6), kTol);
}

TEST(TextMetricsTest, ChrfByHand) {
  // "ab" vs "abc" (spaces removed first): order 1: hyp 2, ref 3, match 2;
  // order 2: hyp 1, ref 2, match 1; order 3: hyp 0 -> not effective; orders
  // 4..6: the reference has none, so hyp counts as 0.
  // P = (1 + 1) / 2 = 1, R = (2/3 + 1/2) / 2 = 7/12, chrF = 5PR / (4P + R).
  const ChrfScore s = SentenceChrf("a b", "abc");
  EXPECT_EQ(s.effective_order, 2);
  EXPECT_EQ(s.hyp_ngrams, (std::array<int64_t, 6>{2, 1, 0, 0, 0, 0}));
  EXPECT_EQ(s.ref_ngrams, (std::array<int64_t, 6>{3, 2, 1, 0, 0, 0}));
  EXPECT_NEAR(s.precision, 1.0, kTol);
  EXPECT_NEAR(s.recall, 7.0 / 12, kTol);
  EXPECT_NEAR(s.chrf, 5 * (7.0 / 12) / (4 + 7.0 / 12), kTol);
  EXPECT_NEAR(SentenceChrf("same text", "same text").chrf, 1.0, kTol);
  EXPECT_EQ(SentenceChrf("", "abc").chrf, 0.0);
  EXPECT_EQ(CorpusChrf({}, {}).chrf, 0.0);
  EXPECT_THROW(CorpusChrf({"a"}, {}), Error);
}

TEST(TextMetricsTest, ChrfCountsCodePoints) {
  // "é" is one character (two bytes): 1 unigram, no bigram.
  EXPECT_EQ(SentenceChrf("\xC3\xA9", "\xC3\xA9").hyp_ngrams[0], 1);
  EXPECT_EQ(SentenceChrf("\xC3\xA9", "\xC3\xA9").hyp_ngrams[1], 0);
  // Invalid UTF-8 reads as Python's decode(errors='replace'): "a\xE2\x84b" is
  // a U+FFFD b (one replacement for the truncated sequence), "\xED\xA0\x80"
  // (a surrogate) is three.
  EXPECT_EQ(SentenceChrf("a\xE2\x84"
                         "b",
                         "x")
                .hyp_ngrams[0],
            3);
  const ChrfScore surrogate = SentenceChrf("\xED\xA0\x80", "\xEF\xBF\xBD");
  EXPECT_EQ(surrogate.hyp_ngrams[0], 3);
  EXPECT_EQ(surrogate.matches[0], 1);
}

TEST(TextMetricsTest, ReasonMetricsCarryChrf) {
  const ReasonMetrics m = ComputeReasonMetrics({"same text", "x"}, {"same text", ""});
  EXPECT_EQ(m.pairs, 1);
  EXPECT_NEAR(m.chrf.chrf, 1.0, kTol);
  EXPECT_NEAR(m.bleu.bleu, 0.0, kTol);  // Two tokens: no 4-gram, corpus BLEU 0.
}

}  // namespace
}  // namespace dfar
