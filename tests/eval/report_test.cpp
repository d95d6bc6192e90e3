#include "dfar/eval/report.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "dfar/core/error.h"
#include "dfar/data/csv.h"
#include "dfar/eval/annotations.h"

namespace dfar {
namespace {

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("dfar_report_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

ExampleResult Result(int64_t index, int gold, int predicted, const std::string& reason, const std::string& human) {
  ExampleResult r;
  r.index = index;
  r.statement = "statement, " + std::to_string(index);
  r.gold = gold;
  r.predicted = predicted;
  r.reason = reason;
  r.gold_reason = human;
  r.generated = predicted < 0 ? "hmm" : std::string(predicted == 0 ? "ethical. " : "unethical. ") + reason;
  return r;
}

std::vector<ExampleResult> FourResults() {
  return {Result(0, 0, 0, "the cat sat on the mat", "the cat is on the mat"), Result(1, 1, 1, "", "because it hurts"),
          Result(2, 1, 0, "A B C D", "B D E"), Result(3, 0, kUnparseable, "", "x y")};
}

ReportInfo Info(const std::string& checkpoint, const std::string& objective, const std::string& mode = "generate") {
  ReportInfo i;
  i.model = ".cache/models/smollm2-135m-instruct.gguf";
  i.checkpoint = checkpoint;
  i.objective = objective;
  i.template_name = "llama2";
  i.data_file = "../shared/data/dfar/DFAR_testset.csv";
  i.mode = mode;
  i.world_size = 2;
  i.backend = "mpi";
  i.batch_size = 8;
  i.max_new_tokens = 96;
  return i;
}

std::vector<RankStats> Ranks() {
  RankStats a, b;
  a.rank = 0;
  a.examples = 2;
  a.prompt_tokens = 100;
  a.generated_tokens = 20;
  a.seconds = 2.0;
  b = a;
  b.rank = 1;
  b.seconds = 3.0;
  return {a, b};
}

// FourResults as the reason judge (reason_judge.h) would leave them.
std::vector<ExampleResult> FourJudged() {
  auto rs = FourResults();
  const double similarity[] = {0.9, 0.0, 0.2, 0.0};
  const int reason_label[] = {0, kUnparseable, 0, kUnparseable};  // Empty reasons get no label.
  const int human_label[] = {0, 1, 1, 1};
  for (size_t i = 0; i < rs.size(); ++i) {
    rs[i].judged = true;
    rs[i].similarity = similarity[i];
    rs[i].reason_label = reason_label[i];
    rs[i].human_reason_label = human_label[i];
  }
  return rs;
}

TEST_F(ReportTest, BuildComputesMetricsFromResults) {
  const EvalReport r = BuildReport(Info("", "lr"), FourJudged(), Ranks());
  EXPECT_EQ(r.n, 4);
  EXPECT_DOUBLE_EQ(r.classification.accuracy, 0.5);
  EXPECT_EQ(r.accuracy.k, 2);
  // Wilson 95% for 2/4: center (0.5 + z^2/8) / (1 + z^2/4) = 0.5, half-width
  // z / (1 + z^2/4) * sqrt(0.25/4 + z^2/64) = 1.959964 / 1.960365 *
  // sqrt(0.122523) = 0.349961 (z = 1.959964, z^2 = 3.841459).
  EXPECT_NEAR(r.accuracy.ci.low, 0.5 - 0.349961, 1e-6);
  EXPECT_NEAR(r.accuracy.ci.high, 0.5 + 0.349961, 1e-6);
  EXPECT_EQ(r.unparseable.k, 1);
  EXPECT_LE(r.macro_f1_ci.low, r.classification.macro_f1);
  EXPECT_GE(r.macro_f1_ci.high, r.classification.macro_f1);
  ASSERT_TRUE(r.reasons_all.has_value());
  EXPECT_EQ(r.reasons_all->overlap.pairs, 4);
  EXPECT_NEAR(r.reasons_all->overlap.rouge_l_f1, (5.0 / 6 + 0 + 4.0 / 7 + 0) / 4, 1e-12);
  ASSERT_TRUE(r.reasons_all->judged);
  EXPECT_NEAR(r.reasons_all->similarity.mean, (0.9 + 0 + 0.2 + 0) / 4, 1e-12);
  // Misaligned: the two empty reasons, and example 2's reason, which reads
  // ethical for an unethical statement.
  EXPECT_EQ(r.reasons_all->misaligned.k, 3);
  // Over the rows with the right verdict (0 and 1): example 1 has no reason.
  ASSERT_TRUE(r.reasons_correct.has_value());
  EXPECT_EQ(r.reasons_correct->rows, 2);
  EXPECT_EQ(r.reasons_correct->misaligned.k, 1);
  EXPECT_NEAR(r.reasons_correct->similarity.mean, 0.45, 1e-12);
  // The rule on the human reasons agrees with gold on 0, 1, 2 but not 3.
  ASSERT_TRUE(r.rule_ceiling.has_value());
  EXPECT_EQ(r.rule_ceiling->k, 3);
  EXPECT_NEAR(r.mean_reason_words, 10.0 / 4, 1e-12);
  EXPECT_DOUBLE_EQ(r.wall_seconds, 3.0);
  EXPECT_EQ(r.correct, (std::vector<bool>{true, true, false, false}));
  EXPECT_EQ(RowLabel(r), "pre-trained");
}

TEST_F(ReportTest, WhichMetricsApply) {
  // Unjudged results (no encoder): overlap metrics, no similarity or MAR.
  const EvalReport plain = BuildReport(Info("ck", "lr"), FourResults(), Ranks());
  ASSERT_TRUE(plain.reasons_all.has_value());
  EXPECT_FALSE(plain.reasons_all->judged);
  EXPECT_FALSE(plain.rule_ceiling.has_value());
  const EvalReport lik = BuildReport(Info("ck", "lr", "likelihood"), FourResults(), Ranks());
  EXPECT_FALSE(lik.reasons_all.has_value());
  auto no_human = FourResults();
  for (auto& r : no_human) r.gold_reason.clear();
  EXPECT_FALSE(BuildReport(Info("", "l"), no_human, Ranks()).reasons_all.has_value());
}

TEST_F(ReportTest, RowLabels) {
  EXPECT_EQ(RowLabel(BuildReport(Info("", "l"), {}, {})), "pre-trained");
  EXPECT_EQ(RowLabel(BuildReport(Info("runs/a/ckpt", "l"), {}, {})), "L");
  EXPECT_EQ(RowLabel(BuildReport(Info("runs/b/ckpt", "lr"), {}, {})), "L+R");
}

TEST_F(ReportTest, JsonRoundTrips) {
  const EvalReport r = BuildReport(Info("runs/x", "lr"), FourJudged(), Ranks());
  const nlohmann::json j = ReportToJson(r);
  EXPECT_EQ(j.at("format"), "dfar-eval-report");
  EXPECT_EQ(j.at("version"), 2);
  EXPECT_EQ(j.at("metrics").at("reasons_all").at("auto_mar").at("k"), 3);
  EXPECT_EQ(j.at("row"), "L+R");
  EXPECT_EQ(j.at("metrics").at("confusion").at("counts")[1][0], 1);
  EXPECT_DOUBLE_EQ(j.at("timing").at("ranks")[1].at("tokens_per_s").get<double>(), 40.0);
  const EvalReport back = ReportFromJson(j, "mem");
  EXPECT_EQ(ReportToJson(back), j);
}

TEST_F(ReportTest, ReaderRejectsForeignAndNewerFiles) {
  nlohmann::json j = ReportToJson(BuildReport(Info("", "l"), FourResults(), Ranks()));
  j["version"] = 3;
  EXPECT_THROW(ReportFromJson(j, "x.json"), Error);
  j["version"] = 1;  // Before intervals and reason judging: refused, not misread.
  EXPECT_THROW(ReportFromJson(j, "x.json"), Error);
  EXPECT_THROW(ReportFromJson(nlohmann::json{{"a", 1}}, "x.json"), Error);
  j["version"] = 2;
  j["metrics"].erase("accuracy");
  try {
    ReportFromJson(j, "x.json");
    FAIL() << "malformed report accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("x.json: malformed eval report"), std::string::npos) << e.message();
  }
}

std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST_F(ReportTest, WritesEveryFileAtomically) {
  const auto results = FourResults();
  const EvalReport r = BuildReport(Info("", "lr"), FourJudged(), Ranks());
  WriteEvalOutputs(dir_.string(), r, results);
  for (const char* f : {"eval_report.json", "eval_report.md", "predictions.jsonl", "annotations.csv"}) {
    EXPECT_TRUE(std::filesystem::exists(dir_ / f)) << f;
  }
  for (const auto& e : std::filesystem::directory_iterator(dir_)) EXPECT_NE(e.path().extension(), ".tmp");
  std::istringstream lines(Slurp(dir_ / "predictions.jsonl"));
  std::string line;
  int64_t i = 0;
  for (; std::getline(lines, line); ++i) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j.at("index"), i);
    EXPECT_EQ(j.at("parsed"), i != 3);
  }
  EXPECT_EQ(i, 4);
  const CsvTable t = ReadCsv((dir_ / "annotations.csv").string());
  ASSERT_EQ(t.rows.size(), 4u);
  EXPECT_EQ(t.rows[0].fields[0], "statement, 0");
  EXPECT_EQ(t.rows[3].fields[2], "-1");
  EXPECT_EQ(t.rows[0].fields[4], "");
  EXPECT_THROW(ReadAnnotations((dir_ / "annotations.csv").string()), Error);  // Not yet annotated.
  EXPECT_EQ(ReportToJson(ReadReport(dir_.string())), ReportToJson(r));
  const std::string md = Slurp(dir_ / "eval_report.md");
  EXPECT_NE(md.find("| accuracy"), std::string::npos) << md;
  EXPECT_NE(md.find("50.0% [15.0, 85.0] (2/4)"), std::string::npos) << md;
  EXPECT_NE(md.find("automatic MAR"), std::string::npos) << md;
  EXPECT_EQ(md.find("MAR proxy"), std::string::npos) << md;
  // Every column is explained in a line of its own.
  for (const char* line : {"- accuracy:", "- unparseable:", "- macro F1:", "- similarity:", "- automatic MAR:"})
    EXPECT_NE(md.find(line), std::string::npos) << line;
}

TEST_F(ReportTest, AtomicWriteReplacesAndReportsErrors) {
  std::filesystem::create_directories(dir_);
  const std::string path = (dir_ / "f.txt").string();
  WriteFileAtomic(path, "one");
  WriteFileAtomic(path, "two");
  EXPECT_EQ(Slurp(path), "two");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_THROW(WriteFileAtomic((dir_ / "no" / "such" / "dir.txt").string(), "x"), Error);
}

TEST_F(ReportTest, CompareTableHasIntervalsAndPairedTests) {
  auto better = FourJudged();
  better[2].predicted = 1;  // Right where the others are wrong.
  better[3].predicted = 0;
  const std::vector<EvalReport> reports = {BuildReport(Info("", "lr"), FourJudged(), Ranks()),
                                           BuildReport(Info("runs/l/ckpt", "l"), FourJudged(), Ranks()),
                                           BuildReport(Info("runs/lr/ckpt", "lr"), better, Ranks())};
  const std::string table = CompareTable(reports);
  EXPECT_NE(table.find("| accuracy [95%]"), std::string::npos) << table;
  EXPECT_NE(table.find("50.0% [15.0, 85.0]"), std::string::npos) << table;
  EXPECT_NE(table.find("100.0% [51.0, 100.0]"), std::string::npos) << table;
  EXPECT_EQ(table.find("MAR proxy"), std::string::npos) << table;
  // L+R is right on 2 examples where L and the pre-trained row are wrong,
  // never the reverse: exact McNemar p = 2 * 0.5^2 = 0.5.
  EXPECT_NE(table.find("L+R vs L: exact McNemar p = 0.5 (4 examples; 2 right only in L+R, 0 only in L)"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("L vs pre-trained: exact McNemar p = 1 "), std::string::npos) << table;
  // Human MAR beside the automatic one, when given.
  EXPECT_NE(CompareTable(reports, {-1, 0.25, 0.5}).find("| human MAR"), std::string::npos);
}

TEST_F(ReportTest, CompareRefusesDifferentExampleSets) {
  auto fewer = FourJudged();
  fewer.pop_back();
  EvalReport a = BuildReport(Info("", "lr"), FourJudged(), Ranks());
  EvalReport b = BuildReport(Info("runs/lr/ckpt", "lr"), fewer, Ranks());
  a.source = "a.json";
  b.source = "b.json";
  try {
    CompareTable({a, b});
    FAIL() << "paired reports of different example sets";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("a.json and b.json cannot be paired: they evaluated different example sets"),
              std::string::npos)
        << e.message();
  }
  b = BuildReport(Info("runs/lr/ckpt", "lr"), FourJudged(), Ranks());
  b.info.data_file = "ethos.csv";
  EXPECT_THROW(CompareTable({a, b}), Error);
}

}  // namespace
}  // namespace dfar
