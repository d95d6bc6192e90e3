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

TEST_F(ReportTest, BuildComputesMetricsFromResults) {
  const EvalReport r = BuildReport(Info("", "lr"), FourResults(), Ranks());
  EXPECT_EQ(r.n, 4);
  EXPECT_DOUBLE_EQ(r.classification.accuracy, 0.5);
  ASSERT_TRUE(r.reason.has_value());
  EXPECT_EQ(r.reason->pairs, 4);
  EXPECT_NEAR(r.reason->rouge_l_f1, (5.0 / 6 + 0 + 4.0 / 7 + 0) / 4, 1e-12);
  ASSERT_TRUE(r.mar_proxy.has_value());
  EXPECT_EQ(r.mar_proxy->misaligned, 3);  // Missing reason, wrong verdict, unparseable.
  EXPECT_NEAR(r.mean_reason_words, 10.0 / 4, 1e-12);
  EXPECT_DOUBLE_EQ(r.wall_seconds, 3.0);
  EXPECT_EQ(RowLabel(r), "pre-trained");
}

TEST_F(ReportTest, WhichMetricsApply) {
  EXPECT_FALSE(BuildReport(Info("ck", "l"), FourResults(), Ranks()).mar_proxy.has_value());
  const EvalReport lik = BuildReport(Info("ck", "lr", "likelihood"), FourResults(), Ranks());
  EXPECT_FALSE(lik.reason.has_value());
  EXPECT_FALSE(lik.mar_proxy.has_value());
  auto no_human = FourResults();
  for (auto& r : no_human) r.gold_reason.clear();
  EXPECT_FALSE(BuildReport(Info("", "l"), no_human, Ranks()).reason.has_value());
}

TEST_F(ReportTest, RowLabels) {
  EXPECT_EQ(RowLabel(BuildReport(Info("", "l"), {}, {})), "pre-trained");
  EXPECT_EQ(RowLabel(BuildReport(Info("runs/a/ckpt", "l"), {}, {})), "L");
  EXPECT_EQ(RowLabel(BuildReport(Info("runs/b/ckpt", "lr"), {}, {})), "L+R");
}

TEST_F(ReportTest, JsonRoundTrips) {
  const EvalReport r = BuildReport(Info("runs/x", "lr"), FourResults(), Ranks());
  const nlohmann::json j = ReportToJson(r);
  EXPECT_EQ(j.at("format"), "dfar-eval-report");
  EXPECT_EQ(j.at("version"), 1);
  EXPECT_EQ(j.at("row"), "L+R");
  EXPECT_EQ(j.at("metrics").at("confusion").at("counts")[1][0], 1);
  EXPECT_DOUBLE_EQ(j.at("timing").at("ranks")[1].at("tokens_per_s").get<double>(), 40.0);
  const EvalReport back = ReportFromJson(j, "mem");
  EXPECT_EQ(ReportToJson(back), j);
}

TEST_F(ReportTest, ReaderRejectsForeignAndNewerFiles) {
  nlohmann::json j = ReportToJson(BuildReport(Info("", "l"), FourResults(), Ranks()));
  j["version"] = 2;
  EXPECT_THROW(ReportFromJson(j, "x.json"), Error);
  EXPECT_THROW(ReportFromJson(nlohmann::json{{"a", 1}}, "x.json"), Error);
  j["version"] = 1;
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
  const EvalReport r = BuildReport(Info("", "lr"), results, Ranks());
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
  EXPECT_NE(md.find("50.0% (2/4)"), std::string::npos) << md;
  EXPECT_NE(md.find("MAR proxy"), std::string::npos) << md;
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

TEST_F(ReportTest, CompareTableHasOneRowPerReport) {
  const auto results = FourResults();
  const std::vector<EvalReport> reports = {BuildReport(Info("", "lr"), results, Ranks()),
                                           BuildReport(Info("runs/l/ckpt", "l"), results, Ranks()),
                                           BuildReport(Info("runs/lr/ckpt", "lr"), results, Ranks())};
  const std::string table = CompareTable(reports);
  const std::string expected =
      "| model                      | row         | accuracy | macro F1 | MAR proxy | ROUGE-L | n   | data             "
      "|\n"
      "|----------------------------|-------------|----------|----------|-----------|---------|-----|------------------"
      "|\n"
      "| smollm2-135m-instruct.gguf | pre-trained | 50.0%    | 0.583    | 75.0%     | 0.3512  | 4   | DFAR_testset.csv "
      "|\n"
      "| smollm2-135m-instruct.gguf | L           | 50.0%    | 0.583    | n/a       | 0.3512  | 4   | DFAR_testset.csv "
      "|\n"
      "| smollm2-135m-instruct.gguf | L+R         | 50.0%    | 0.583    | 75.0%     | 0.3512  | 4   | DFAR_testset.csv "
      "|\n";
  EXPECT_EQ(table, expected) << table;
}

}  // namespace
}  // namespace dfar
