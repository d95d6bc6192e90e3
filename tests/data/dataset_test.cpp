#include "dfar/data/dataset.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "dfar/core/error.h"

namespace dfar {
namespace {

namespace fs = std::filesystem;

const std::string kSample = DFAR_SOURCE_DIR "/data/samples/dfar_sample.csv";
const std::string kTrain = DFAR_SHARED_DIR "/data/dfar/DFAR_trainset.csv";
const std::string kTest = DFAR_SHARED_DIR "/data/dfar/DFAR_testset.csv";
const std::string kEthos = DFAR_SHARED_DIR "/data/ethos/Ethos_Dataset_Binary.csv";

void ExpectError(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected a dfar::Error";
  } catch (const Error& e) {
    for (const std::string& part : parts) {
      EXPECT_NE(e.message().find(part), std::string::npos) << "'" << part << "' not in: " << e.message();
    }
  }
}

// Writes `bytes` to a file in a fresh per-test directory.
std::string TempCsv(const std::string& bytes) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::path(::testing::TempDir()) / (std::string("dfar_") + info->test_suite_name() + "_" + info->name());
  fs::create_directories(dir);
  static int counter = 0;
  const std::string path = (dir / ("t" + std::to_string(counter++) + ".csv")).string();
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

DataConfig EthosSpec() {
  DataConfig spec;
  spec.delimiter = ";";
  spec.text_column = "comment";
  spec.label_column = "isHate";
  spec.reason_column = "";
  spec.label_rule = "threshold";
  spec.label_threshold = 0.5;
  return spec;
}

std::vector<Example> MakeExamples(int n) {
  std::vector<Example> all(n);
  for (int i = 0; i < n; ++i) {
    all[i].index = i;
    all[i].statement = "s" + std::to_string(i);
  }
  return all;
}

std::vector<int64_t> Indices(const std::vector<Example>& examples) {
  std::vector<int64_t> out;
  for (const Example& ex : examples) out.push_back(ex.index);
  return out;
}

TEST(DatasetLoad, SampleFile) {
  std::vector<Example> ex = LoadExamples(kSample, DataConfig());
  ASSERT_EQ(ex.size(), 8u);
  EXPECT_EQ(ex[0].index, 0);
  EXPECT_EQ(ex[0].line, 2);
  EXPECT_EQ(ex[0].statement, "I returned the wallet I found to its owner.");
  EXPECT_EQ(ex[0].label, kEthical);
  EXPECT_EQ(ex[1].label, kUnethical);
  EXPECT_EQ(ex[3].statement, "I told my friend \"your cooking is great\" to spare her feelings.");
  EXPECT_NE(ex[4].reason.find("dishonest.\r\nIt also"), std::string::npos);
  EXPECT_EQ(ex[5].line, 8);  // Row 4 spans lines 6-7.
  EXPECT_EQ(ex[7].index, 7);
}

TEST(DatasetLoad, MapRuleTrimsCellsAndUsesConfiguredValues) {
  DataConfig spec;
  spec.ethical_values = {"ok", "fine"};
  spec.unethical_values = {"bad"};
  auto ex = LoadExamples(TempCsv("Statement,Label,Reason\n  a  , fine ,r\nb,bad,\nc,ok,\" why \"\n"), spec);
  ASSERT_EQ(ex.size(), 3u);
  EXPECT_EQ(ex[0].statement, "a");
  EXPECT_EQ(ex[0].label, kEthical);
  EXPECT_EQ(ex[1].label, kUnethical);
  EXPECT_EQ(ex[2].label, kEthical);
  EXPECT_EQ(ex[2].reason, "why");
}

TEST(DatasetLoad, UnknownLabelNamesLineValueAndAllowed) {
  const std::string path = TempCsv("Statement,Label,Reason\na,0,r\n\"b\nb\",yes,r\n");
  ExpectError([&] { LoadExamples(path, DataConfig()); }, {path + ":3:", "'yes'", "'Label'", "'0'", "'1'"});
}

TEST(DatasetLoad, MissingColumnNamesFileAndHeaders) {
  const std::string path = TempCsv("Text,Label\na,0\n");
  ExpectError([&] { LoadExamples(path, DataConfig()); }, {path, "'Statement'", "'Text', 'Label'"});
}

TEST(DatasetLoad, NoReasonColumn) {
  DataConfig spec;
  spec.reason_column = "";
  auto ex = LoadExamples(TempCsv("Statement,Label\na,1\n"), spec);
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0].label, kUnethical);
  EXPECT_TRUE(ex[0].reason.empty());
}

TEST(DatasetLoad, ThresholdRule) {
  DataConfig spec = EthosSpec();
  auto ex = LoadExamples(TempCsv("comment;isHate\na;0.5\nb;0.4999\nc; 1 \nd;0\ne;1e-3\n"), spec);
  std::vector<int> labels;
  for (const Example& e : ex) labels.push_back(e.label);
  EXPECT_EQ(labels, (std::vector<int>{1, 0, 1, 0, 0}));
}

TEST(DatasetLoad, ThresholdRuleRejectsNonNumericScores) {
  for (const char* bad : {"high", "0.5x", "", "nan", "inf", "0,5"}) {
    const std::string path = TempCsv(std::string("comment;isHate\nok;0.1\nx;\"") + bad + "\"\n");
    ExpectError([&] { LoadExamples(path, EthosSpec()); }, {path + ":3:", "not a number"});
  }
}

TEST(DatasetLoad, Limit) {
  DataConfig spec;
  spec.limit = 3;
  auto ex = LoadExamples(kSample, spec);
  ASSERT_EQ(ex.size(), 3u);
  EXPECT_EQ(Indices(ex), (std::vector<int64_t>{0, 1, 2}));
  spec.limit = 100;
  EXPECT_EQ(LoadExamples(kSample, spec).size(), 8u);
  spec.limit = -1;
  ExpectError([&] { LoadExamples(kSample, spec); }, {"data.limit"});
}

TEST(DatasetLoad, StrideSubsetSpreadsRowsOverTheFile) {
  DataConfig spec;
  spec.limit = 3;
  spec.subset = "stride";
  EXPECT_EQ(Indices(LoadExamples(kSample, spec)), (std::vector<int64_t>{0, 2, 5}));  // floor(i * 8 / 3).
  spec.limit = 100;
  EXPECT_EQ(LoadExamples(kSample, spec).size(), 8u);
}

TEST(SubsetRows, HeadStrideAndErrors) {
  EXPECT_EQ(SubsetRows(10, 4, "head"), (std::vector<size_t>{0, 1, 2, 3}));
  EXPECT_EQ(SubsetRows(10, 4, "stride"), (std::vector<size_t>{0, 2, 5, 7}));
  EXPECT_EQ(SubsetRows(4500, 640, "stride").back(), 4492u);  // Reaches the file's last section.
  EXPECT_EQ(SubsetRows(3, 0, "stride"), (std::vector<size_t>{0, 1, 2}));
  EXPECT_EQ(SubsetRows(3, 5, "stride"), (std::vector<size_t>{0, 1, 2}));
  ExpectError([] { SubsetRows(3, 1, "random"); }, {"subset", "random"});
}

TEST(DatasetLoad, ConfigAndContentErrors) {
  DataConfig spec;
  const std::string path = TempCsv("Statement,Label,Reason\n\"  \",0,r\n");
  ExpectError([&] { LoadExamples(path, spec); }, {path + ":2:", "empty statement"});
  ExpectError([&] { LoadExamples(TempCsv("Statement,Label,Reason\n"), spec); }, {"no data rows"});
  spec.delimiter = ";;";
  ExpectError([&] { LoadExamples(kSample, spec); }, {"data.delimiter"});
  spec = DataConfig();
  spec.label_rule = "magic";
  ExpectError([&] { LoadExamples(kSample, spec); }, {"data.label_rule", "magic"});
  spec = DataConfig();
  spec.unethical_values = {"0", "1"};
  ExpectError([&] { LoadExamples(kSample, spec); }, {"'0'", "both"});
}

TEST(DatasetRealData, DfarTrainAndTestCounts) {
  if (!fs::exists(kTrain) || !fs::exists(kTest)) GTEST_SKIP() << "DFAR data not found under " DFAR_SHARED_DIR;
  DatasetStats train = ComputeStats(LoadExamples(kTrain, DataConfig()));
  EXPECT_EQ(train.rows, 4500);
  EXPECT_EQ(train.ethical, 2588);
  EXPECT_EQ(train.unethical, 1912);
  EXPECT_EQ(train.with_reason, 4500);
  EXPECT_GT(train.non_ascii, 0);
  EXPECT_GT(train.mean_reason_chars, train.mean_statement_chars);
  EXPECT_GE(train.max_reason_chars, train.mean_reason_chars);
  DatasetStats test = ComputeStats(LoadExamples(kTest, DataConfig()));
  EXPECT_EQ(test.rows, 500);
  EXPECT_EQ(test.ethical, 298);
  EXPECT_EQ(test.unethical, 202);
}

TEST(DatasetRealData, EthosThreshold) {
  if (!fs::exists(kEthos)) GTEST_SKIP() << "ETHOS data not found under " DFAR_SHARED_DIR;
  std::vector<Example> ex = LoadExamples(kEthos, EthosSpec());
  DatasetStats s = ComputeStats(ex);
  EXPECT_EQ(s.rows, 998);
  EXPECT_EQ(s.unethical, 433);
  EXPECT_EQ(s.ethical, 565);
  EXPECT_EQ(s.with_reason, 0);
}

TEST(DatasetHoldOut, SizesDisjointAndFileOrder) {
  const auto all = MakeExamples(1001);
  TrainValSplit split = HoldOutValidation(all, 0.1, 7);
  EXPECT_EQ(split.val.size(), 100u);  // round(100.1)
  EXPECT_EQ(split.train.size(), 901u);
  std::vector<int64_t> train = Indices(split.train), val = Indices(split.val);
  EXPECT_TRUE(std::is_sorted(train.begin(), train.end()));
  EXPECT_TRUE(std::is_sorted(val.begin(), val.end()));
  std::set<int64_t> seen(train.begin(), train.end());
  seen.insert(val.begin(), val.end());
  EXPECT_EQ(seen.size(), all.size());                                      // Disjoint, and together every example.
  EXPECT_EQ(HoldOutValidation(MakeExamples(10), 0.25, 1).val.size(), 3u);  // round(2.5) = 3
}

TEST(DatasetHoldOut, DeterministicBySeed) {
  const auto all = MakeExamples(500);
  EXPECT_EQ(Indices(HoldOutValidation(all, 0.2, 42).val), Indices(HoldOutValidation(all, 0.2, 42).val));
  EXPECT_NE(Indices(HoldOutValidation(all, 0.2, 42).val), Indices(HoldOutValidation(all, 0.2, 43).val));
  // Not simply the first or last rows.
  std::vector<int64_t> val = Indices(HoldOutValidation(all, 0.2, 42).val);
  EXPECT_LT(val.front(), 100);
  EXPECT_GT(val.back(), 400);
}

TEST(DatasetHoldOut, EdgeFractions) {
  const auto all = MakeExamples(20);
  EXPECT_TRUE(HoldOutValidation(all, 0.0, 1).val.empty());
  EXPECT_EQ(HoldOutValidation(all, 0.0, 1).train.size(), 20u);
  EXPECT_EQ(HoldOutValidation(all, 1.0, 1).val.size(), 20u);
  EXPECT_TRUE(HoldOutValidation({}, 0.5, 1).val.empty());
  ExpectError([&] { HoldOutValidation(all, -0.1, 1); }, {"fraction"});
  ExpectError([&] { HoldOutValidation(all, 1.5, 1); }, {"fraction"});
}

TEST(DatasetComputeStats, CountsAndCharacterLengths) {
  std::vector<Example> ex(3);
  ex[0].statement = "abcd";
  ex[0].label = kUnethical;
  ex[0].reason = "caf\xC3\xA9";  // 4 characters, 5 bytes.
  ex[1].statement = "ab";
  ex[2].statement = "\xE2\x80\x99x";  // 2 characters.
  ex[2].reason = "12345678";
  DatasetStats s = ComputeStats(ex);
  EXPECT_EQ(s.rows, 3);
  EXPECT_EQ(s.ethical, 2);
  EXPECT_EQ(s.unethical, 1);
  EXPECT_EQ(s.with_reason, 2);
  EXPECT_EQ(s.non_ascii, 2);
  EXPECT_DOUBLE_EQ(s.mean_statement_chars, 8.0 / 3);
  EXPECT_DOUBLE_EQ(s.mean_reason_chars, 12.0 / 3);
  EXPECT_EQ(s.max_reason_chars, 8);
  DatasetStats empty = ComputeStats({});
  EXPECT_EQ(empty.rows, 0);
  EXPECT_EQ(empty.mean_reason_chars, 0.0);
}

TEST(DatasetExample, LabelWord) {
  EXPECT_STREQ(LabelWord(kEthical), "ethical");
  EXPECT_STREQ(LabelWord(kUnethical), "unethical");
  EXPECT_THROW(LabelWord(2), Error);
}

}  // namespace
}  // namespace dfar
