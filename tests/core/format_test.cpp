// dfar::Format, the formatter behind every log line (dfar/core/format.h).
#include "dfar/core/format.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace dfar {
namespace {

TEST(FormatTest, PlainPlaceholdersTakeEachKindOfArgument) {
  const std::string name = "rank";
  EXPECT_EQ(Format("{} {} {} {} {}", name, 3, std::uint64_t{18446744073709551615ull}, -7, true),
            "rank 3 18446744073709551615 -7 true");
  EXPECT_EQ(Format("{}/{}", "a", std::string_view("b")), "a/b");
  EXPECT_EQ(Format("{}", std::filesystem::path("/tmp/x")), "\"/tmp/x\"");  // via operator<<, as fmt's ostream
}

TEST(FormatTest, FloatsPrintShortestRoundTripByDefault) {
  EXPECT_EQ(Format("{}", 0.1), "0.1");
  EXPECT_EQ(Format("{}", 1.0), "1");
  EXPECT_EQ(Format("{}", 1.0 / 3.0), "0.3333333333333333");
  EXPECT_EQ(Format("{}", 2.5f), "2.5");
  EXPECT_EQ(Format("{}", 0.1f), "0.1");  // a float's own digits, not those of double(0.1f)
}

TEST(FormatTest, PrecisionAndTypeFollowFmt) {
  EXPECT_EQ(Format("{:.4f}", 0.123456), "0.1235");
  EXPECT_EQ(Format("{:.0f}", 1234.5678), "1235");
  EXPECT_EQ(Format("{:.3e}", 0.00012345), "1.234e-04");  // fmt: "1.234e-04" too (two-digit exponent)
  EXPECT_EQ(Format("{:.1f}", 3), "3.0");                 // an integer under a float type
  EXPECT_EQ(Format("{:d}", 42), "42");
  EXPECT_EQ(Format("{:.3}", std::string("abcdef")), "abc");  // precision truncates text
  EXPECT_EQ(Format("[{:5}] [{:5}]", 42, "ab"), "[   42] [ab   ]");
}

TEST(FormatTest, DoubledBracesAreLiteral) {
  EXPECT_EQ(Format("{{}} {}", 1), "{} 1");
}

TEST(FormatTest, MistakesAreWrittenIntoTheTextNotThrown) {
  EXPECT_EQ(Format("{} {}", 1), "1 {!missing argument}");
  EXPECT_EQ(Format("{:d}", "text"), "{!bad spec ':d'}");
  EXPECT_EQ(Format("{:.2f}", "text"), "{!bad spec ':.2f'}");
  EXPECT_EQ(Format("{:q}", 1), "{!bad spec ':q'}");
  EXPECT_EQ(Format("{0}", 1), "{!positional fields are not supported: 0}");
  EXPECT_EQ(Format("a {", 1), "a {!unclosed}");
  EXPECT_EQ(Format("no placeholders", 1), "no placeholders");  // extra arguments are ignored, as in fmt
}

}  // namespace
}  // namespace dfar
