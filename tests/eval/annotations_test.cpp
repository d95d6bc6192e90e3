#include "dfar/eval/annotations.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "dfar/core/error.h"
#include "dfar/data/csv.h"

namespace dfar {
namespace {

class AnnotationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("dfar_annotations_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& text) {
    const std::string path = (dir_ / "a.csv").string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  // The message of the error ReadAnnotations throws for `text`.
  std::string ErrorFor(const std::string& text) {
    try {
      ReadAnnotations(Write(text));
    } catch (const Error& e) {
      return e.message();
    }
    return "(no error)";
  }

  std::filesystem::path dir_;
};

const char* const kHeader = "statement,gold_label,predicted_label,generated_reason,aligned\n";

TEST_F(AnnotationsTest, WrittenCsvReadsBackWithQuoting) {
  const std::vector<AnnotationRow> rows = {{"Lying, \"sometimes\"", 1, 0, "line one\nline two", -1, 0},
                                           {"plain", 0, -1, "", -1, 0}};
  const std::string text = AnnotationsCsv(rows);
  const CsvTable t = ParseCsv(text, "mem");
  ASSERT_EQ(t.header.size(), 5u);
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].fields[0], "Lying, \"sometimes\"");
  EXPECT_EQ(t.rows[0].fields[3], "line one\nline two");
  EXPECT_EQ(t.rows[0].fields[4], "");
  EXPECT_EQ(t.rows[1].fields[2], "-1");
}

TEST_F(AnnotationsTest, HumanMarIsTheShareOfMisaligned) {
  const auto rows = ReadAnnotations(Write(std::string(kHeader) + "a,1,1,r,1\n"
                                                                 "b,0,0,r,0\n"
                                                                 "c,0,1,r, YES \n"
                                                                 "d,1,-1,,no\n"
                                                                 "e,1,1,r,True\n"
                                                                 "f,0,0,r,FALSE\n"
                                                                 "g,0,0,r,0\n"
                                                                 "h,1,1,r,1\n"));
  ASSERT_EQ(rows.size(), 8u);
  EXPECT_EQ(rows[3].predicted_label, -1);
  EXPECT_EQ(rows[2].aligned, 1);
  EXPECT_EQ(rows[1].line, 3);
  const HumanMar m = ComputeHumanMar(rows);
  EXPECT_EQ(m.n, 8);
  EXPECT_EQ(m.misaligned, 4);  // b, d, f, g
  EXPECT_EQ(m.aligned, 4);
  EXPECT_DOUBLE_EQ(m.mar, 0.5);
}

TEST_F(AnnotationsTest, RejectsUnfilledAndMalformedRowsWithFileLine) {
  {
    const std::string msg = ErrorFor(std::string(kHeader) + "a,1,1,r,1\nb,0,0,r,\n");
    EXPECT_NE(msg.find("a.csv:3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'aligned' is empty"), std::string::npos) << msg;
  }
  EXPECT_NE(ErrorFor(std::string(kHeader) + "a,1,1,r,maybe\n").find("a.csv:2"), std::string::npos);
  EXPECT_NE(ErrorFor(std::string(kHeader) + "a,1,1,r,1\n,,,,\n").find("a.csv:3: empty row"), std::string::npos);
  EXPECT_NE(ErrorFor(std::string(kHeader) + "a,2,1,r,1\n").find("gold_label"), std::string::npos);
  EXPECT_NE(ErrorFor(std::string(kHeader) + "a,1,x,r,1\n").find("predicted_label"), std::string::npos);
  EXPECT_NE(ErrorFor(std::string(kHeader) + ",1,1,r,1\n").find("'statement' is empty"), std::string::npos);
  EXPECT_NE(ErrorFor(std::string(kHeader) + "a,1,1,r\n").find("a.csv:2"), std::string::npos);  // Field count.
  EXPECT_NE(ErrorFor("statement,gold_label,predicted_label,generated_reason\na,1,1,r\n").find("aligned"),
            std::string::npos);
  EXPECT_NE(ErrorFor(kHeader).find("no annotated rows"), std::string::npos);
}

}  // namespace
}  // namespace dfar
