#include "dfar/data/csv.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "dfar/core/error.h"
#include "helpers/test_util.h"

namespace dfar {
namespace {

using testing::ErrorOf;

namespace fs = std::filesystem;

const std::string kFixtures = DFAR_SOURCE_DIR "/tests/fixtures/csv/";
const std::string kTrain = DFAR_SHARED_DIR "/data/dfar/DFAR_trainset.csv";
const std::string kTest = DFAR_SHARED_DIR "/data/dfar/DFAR_testset.csv";

void ExpectError(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  const std::string message = ErrorOf(fn);
  for (const std::string& part : parts) {
    EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
  }
}

void ExpectParseError(const std::string& bytes, const std::vector<std::string>& parts, char delimiter = ',') {
  ExpectError([&] { ParseCsv(bytes, "in", delimiter); }, parts);
}

// A fresh directory per test under gtest's temp dir.
std::string TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::path(::testing::TempDir()) / (std::string("dfar_") + info->test_suite_name() + "_" + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::string WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::vector<std::string> Fields(std::initializer_list<const char*> list) {
  return {list.begin(), list.end()};
}

TEST(CsvParse, SimpleLf) {
  CsvTable t = ParseCsv("a,b\n1,2\n3,4\n", "in");
  EXPECT_EQ(t.source, "in");
  EXPECT_EQ(t.header, Fields({"a", "b"}));
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].fields, Fields({"1", "2"}));
  EXPECT_EQ(t.rows[1].fields, Fields({"3", "4"}));
  EXPECT_EQ(t.rows[0].line, 2);
  EXPECT_EQ(t.rows[1].line, 3);
}

TEST(CsvParse, CrlfAndNoTrailingNewline) {
  CsvTable t = ParseCsv("a,b\r\n1,2\r\n3,4", "in");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].fields, Fields({"1", "2"}));
  EXPECT_EQ(t.rows[1].fields, Fields({"3", "4"}));
}

TEST(CsvParse, BomIsStripped) {
  CsvTable t = ParseCsv("\xEF\xBB\xBFStatement,Label\r\nx,0\r\n", "in");
  EXPECT_EQ(t.header, Fields({"Statement", "Label"}));
  EXPECT_EQ(t.Column("Statement"), 0u);
}

TEST(CsvParse, QuotedFieldsSpanLinesAndKeepLineNumbers) {
  CsvTable t = ParseCsv("h1,h2\n\"multi\nline\",x\n\"a\r\nb\r\nc\",y\nlast,z\n", "in");
  ASSERT_EQ(t.rows.size(), 3u);
  EXPECT_EQ(t.rows[0].fields[0], "multi\nline");
  EXPECT_EQ(t.rows[1].fields[0], "a\r\nb\r\nc");  // Embedded line breaks are kept verbatim.
  EXPECT_EQ(t.rows[0].line, 2);
  EXPECT_EQ(t.rows[1].line, 4);
  EXPECT_EQ(t.rows[2].line, 7);
}

TEST(CsvParse, EscapedQuotesDelimitersAndEmptyFields) {
  CsvTable t = ParseCsv("a,b,c\n\"say \"\"hi\"\"\",\"x,y\",\n\"\",,\"\"\"\"\n", "in");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].fields, Fields({"say \"hi\"", "x,y", ""}));
  EXPECT_EQ(t.rows[1].fields, Fields({"", "", "\""}));
}

TEST(CsvParse, TrailingNewlineMakesNoEmptyRecord) {
  EXPECT_EQ(ParseCsv("a\n1\n", "in").rows.size(), 1u);
  EXPECT_EQ(ParseCsv("a\r\n1\r\n", "in").rows.size(), 1u);
}

TEST(CsvParse, BlankLinesAreSkipped) {
  CsvTable t = ParseCsv("a,b\r\n\r\n1,2\n\n3,4\r\n\r\n\r\n", "in");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].line, 3);
  EXPECT_EQ(t.rows[1].line, 5);
  EXPECT_EQ(ParseCsv("\n\na\n1\n", "in").header, Fields({"a"}));
}

TEST(CsvParse, OtherDelimiterAndHeaderOnly) {
  CsvTable t = ParseCsv("comment;isHate\n\"a;b\";0.5\nc,d;1.0\n", "in", ';');
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].fields, Fields({"a;b", "0.5"}));
  EXPECT_EQ(t.rows[1].fields, Fields({"c,d", "1.0"}));
  EXPECT_TRUE(ParseCsv("a,b\n", "in").rows.empty());
}

TEST(CsvParse, Utf8TextPassesThrough) {
  CsvTable t = ParseCsv("a\n\"caf\xC3\xA9 \xE2\x80\x99 \xF0\x9F\x98\x80\"\n", "in");
  EXPECT_EQ(t.rows.at(0).fields[0], "caf\xC3\xA9 \xE2\x80\x99 \xF0\x9F\x98\x80");
}

TEST(CsvErrors, UnterminatedQuoteNamesTheLineItStarted) {
  ExpectParseError("a,b\n1,2\n3,\"open\nmore\nstill open\n", {"in:3:", "unterminated"});
  ExpectParseError("a\n\"", {"in:2:", "unterminated"});
}

TEST(CsvErrors, StrayQuoteInUnquotedField) {
  ExpectParseError("a,b\n1,2\nx,ab\"c\n", {"in:3:", "stray quote"});
  ExpectParseError("a,b\n\"ok\"x,2\n", {"in:2:", "after a closing quote"});
  ExpectParseError("a,b\n\"ok\" ,2\n", {"in:2:"});
}

TEST(CsvErrors, InvalidUtf8NamesTheLine) {
  ExpectParseError("a,b\n1,2\n3,caf\xE9\n", {"in:3:", "invalid UTF-8"});
  ExpectParseError(
      "\xEF\xBB\xBF"
      "a\n\"x\n\xC0\x80\"\n",
      {"in:3:", "invalid UTF-8"});
}

TEST(CsvErrors, EmptyFile) {
  ExpectParseError("", {"in:1:", "empty file"});
  ExpectParseError("\xEF\xBB\xBF", {"empty file"});
  ExpectParseError("\r\n\n\r\n", {"empty file"});
}

TEST(CsvErrors, WrongFieldCountNamesLineAndCounts) {
  ExpectParseError("a,b,c\n1,2,3\n\"x\ny\",2\n", {"in:3:", "expected 3", "found 2"});
  ExpectParseError("a,b\n1,2\n1,2,3,4\n", {"in:3:", "expected 2", "more than 2"});
}

TEST(CsvErrors, LoneCarriageReturnOutsideQuotes) {
  ExpectParseError("a,b\r1,2\r", {"in:1:", "carriage return"});
  // Inside quotes it is data (the DFAR train file has such fields).
  EXPECT_EQ(ParseCsv("a\n\"x\r\"\n", "in").rows.at(0).fields[0], "x\r");
}

TEST(CsvErrors, DelimiterCannotBeQuoteOrLineBreak) {
  ExpectParseError("a\n", {"delimiter"}, '"');
  ExpectParseError("a\n", {"delimiter"}, '\n');
}

TEST(CsvErrors, MissingColumnListsHeaders) {
  CsvTable t = ParseCsv("Statement,Label\nx,0\n", "data.csv");
  ExpectError([&] { t.Column("Reason"); }, {"data.csv", "'Reason'", "'Statement', 'Label'"});
}

TEST(CsvUtf8, Validation) {
  size_t bad = 99;
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF"));
  EXPECT_FALSE(IsValidUtf8("ab\xC0\x80", &bad));  // Overlong NUL.
  EXPECT_EQ(bad, 2u);
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\xAF"));      // Overlong '/'.
  EXPECT_FALSE(IsValidUtf8("\xF0\x80\x80\xAF"));  // Overlong, 4 bytes.
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // Surrogate U+D800.
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // Above U+10FFFF.
  EXPECT_FALSE(IsValidUtf8("\xF5\x80\x80\x80"));
  EXPECT_FALSE(IsValidUtf8("x\xE2\x82", &bad));  // Truncated.
  EXPECT_EQ(bad, 1u);
  EXPECT_FALSE(IsValidUtf8("\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC3(", &bad));
  EXPECT_EQ(bad, 0u);
}

TEST(CsvFiles, ReadsAWrittenFile) {
  const std::string path = WriteFile(TestDir() + "/t.csv", "\xEF\xBB\xBFh1,h2\r\n\"a\r\nb\",1\r\nc,2\r\n\r\n");
  CsvTable t = ReadCsv(path);
  EXPECT_EQ(t.source, path);
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[1].line, 4);
}

TEST(CsvFiles, ErrorsNameTheFile) {
  const std::string dir = TestDir();
  const std::string path = WriteFile(dir + "/bad.csv", "a,b\n1,2\n\"x,3\n");
  ExpectError([&] { ReadCsv(path); }, {path + ":3:", "unterminated"});
  ExpectError([&] { ReadCsv(dir + "/missing.csv"); }, {dir + "/missing.csv", "cannot open"});
  ExpectError([&] { ReadCsv(dir); }, {dir, "directory"});
}

TEST(CsvFiles, MalformedFixtures) {
  ExpectError([] { ReadCsv(kFixtures + "unterminated_quote.csv"); }, {"unterminated_quote.csv:2:", "unterminated"});
  ExpectError([] { ReadCsv(kFixtures + "stray_quote.csv"); }, {"stray_quote.csv:3:", "stray quote"});
  ExpectError([] { ReadCsv(kFixtures + "wrong_field_count.csv"); },
              {"wrong_field_count.csv:5:", "expected 3", "found 2"});
  ExpectError([] { ReadCsv(kFixtures + "invalid_utf8.csv"); }, {"invalid_utf8.csv:3:", "invalid UTF-8"});
  ExpectError([] { ReadCsv(kFixtures + "empty.csv"); }, {"empty.csv", "empty file"});
  ExpectError([] { ReadCsv(kFixtures + "bom_only.csv"); }, {"bom_only.csv", "empty file"});
}

TEST(CsvFiles, SampleFile) {
  CsvTable t = ReadCsv(DFAR_SOURCE_DIR "/data/samples/dfar_sample.csv");
  EXPECT_EQ(t.header, Fields({"Statement", "Label", "Reason"}));
  EXPECT_EQ(t.rows.size(), 8u);
}

// Parsing must end in a result or a dfar::Error, whatever the bytes.
void ExpectParsesOrThrows(const std::string& bytes) {
  try {
    ParseCsv(bytes, "fuzz");
  } catch (const Error&) {
  }
}

TEST(CsvFuzz, RandomBytes) {
  std::mt19937_64 rng(42);
  const std::string alphabet = "a,\"\r\n \xC3\xA9\xEF\xBB\xBF\x80\xFF";
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes(rng() % 64, '\0');
    bool from_alphabet = iter % 2 == 0;  // Half CSV-ish, half arbitrary bytes.
    for (char& c : bytes) c = from_alphabet ? alphabet[rng() % alphabet.size()] : static_cast<char>(rng());
    ExpectParsesOrThrows(bytes);
  }
}

TEST(CsvFuzz, EveryTruncationOfAValidFile) {
  const std::string valid = ReadFileBytes(DFAR_SOURCE_DIR "/data/samples/dfar_sample.csv");
  const std::string bom = "\xEF\xBB\xBF" + valid;
  for (const std::string* text : {&valid, &bom}) {
    for (size_t n = 0; n <= text->size(); ++n) ExpectParsesOrThrows(text->substr(0, n));
  }
}

TEST(CsvFuzz, SingleByteMutations) {
  const std::string valid = ReadFileBytes(DFAR_SOURCE_DIR "/data/samples/dfar_sample.csv");
  const char replacements[] = {'"', ',', '\n', '\r', '\0', '\xC3', '\xFF'};
  for (size_t i = 0; i < valid.size(); ++i) {
    for (char r : replacements) {
      std::string mutated = valid;
      mutated[i] = r;
      ExpectParsesOrThrows(mutated);
    }
  }
}

TEST(CsvRealData, DfarTrainAndTest) {
  if (!fs::exists(kTrain) || !fs::exists(kTest)) GTEST_SKIP() << "DFAR data not found under " DFAR_SHARED_DIR;
  CsvTable train = ReadCsv(kTrain);
  CsvTable test = ReadCsv(kTest);
  EXPECT_EQ(train.header, Fields({"Statement", "Label", "Reason"}));
  EXPECT_EQ(test.header, Fields({"Statement", "Label", "Reason"}));  // BOM stripped.
  EXPECT_EQ(train.rows.size(), 4500u);
  EXPECT_EQ(test.rows.size(), 500u);
  int with_newline = 0, multi_line = 0;
  for (const CsvRecord& r : train.rows) {
    ASSERT_EQ(r.fields.size(), 3u) << "line " << r.line;
    bool lf = false, cr = false;
    for (const std::string& f : r.fields) {
      lf = lf || f.find('\n') != std::string::npos;
      cr = cr || f.find('\r') != std::string::npos;
    }
    with_newline += lf;
    multi_line += lf || cr;
  }
  EXPECT_GT(with_newline, 0);
  EXPECT_EQ(multi_line, 48);
}

}  // namespace
}  // namespace dfar
