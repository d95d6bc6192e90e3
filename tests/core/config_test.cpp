#include "dfar/core/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "dfar/core/error.h"
#include "helpers/test_util.h"

namespace dfar {
namespace {

using testing::ErrorOf;

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(ConfigTest, DefaultsAreValid) {
  const Config c = LoadConfig("");
  EXPECT_EQ(c.prompt.objective, "lr");
  EXPECT_EQ(c.data.label_column, "Label");
}

TEST(ConfigTest, YamlOverridesDefaultsAndOverridesWin) {
  const std::string path = WriteTemp("a.yaml", "run:\n  seed: 7\nprompt:\n  objective: l\n");
  const Config c = LoadConfig(path, {"run.seed=9", "data.ethical_values=[a, b]"});
  EXPECT_EQ(c.run.seed, 9u);
  EXPECT_EQ(c.prompt.objective, "l");
  ASSERT_EQ(c.data.ethical_values.size(), 2u);
  EXPECT_EQ(c.data.ethical_values[1], "b");
}

TEST(ConfigTest, UnknownKeyNamesKeyAndLine) {
  const std::string path = WriteTemp("b.yaml", "run:\n  seed: 7\n  sed: 3\n");
  const std::string msg = ErrorOf([&] { LoadConfig(path); });
  EXPECT_NE(msg.find("b.yaml:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("run.sed"), std::string::npos) << msg;
}

TEST(ConfigTest, UnknownSectionNamesLine) {
  const std::string path = WriteTemp("c.yaml", "run:\n  seed: 7\nbogus:\n  x: 1\n");
  const std::string msg = ErrorOf([&] { LoadConfig(path); });
  EXPECT_NE(msg.find("c.yaml:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bogus"), std::string::npos) << msg;
}

TEST(ConfigTest, WrongTypeNamesKeyAndLine) {
  const std::string path = WriteTemp("d.yaml", "data:\n  val_fraction: lots\n");
  const std::string msg = ErrorOf([&] { LoadConfig(path); });
  EXPECT_NE(msg.find("d.yaml:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("data.val_fraction"), std::string::npos) << msg;
}

TEST(ConfigTest, OutOfRangeNamesKeyAndLine) {
  const std::string path = WriteTemp("e.yaml", "\n\nsampler:\n  micro_batch: 0\n");
  const std::string msg = ErrorOf([&] { LoadConfig(path); });
  EXPECT_NE(msg.find("e.yaml:4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("out of range"), std::string::npos) << msg;
}

TEST(ConfigTest, BadEnumListsChoices) {
  const std::string msg = ErrorOf([] { LoadConfig("", {"prompt.objective=lrr"}); });
  EXPECT_NE(msg.find("l|lr"), std::string::npos) << msg;
}

TEST(ConfigTest, YamlSyntaxErrorNamesLine) {
  const std::string path = WriteTemp("f.yaml", "run:\n  seed: [1, 2\n");
  const std::string msg = ErrorOf([&] { LoadConfig(path); });
  EXPECT_NE(msg.find("f.yaml:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("syntax"), std::string::npos) << msg;
}

TEST(ConfigTest, MissingFileIsNamed) {
  const std::string msg = ErrorOf([] { LoadConfig("/nonexistent/x.yaml"); });
  EXPECT_NE(msg.find("/nonexistent/x.yaml"), std::string::npos) << msg;
}

TEST(ConfigTest, MalformedOverrides) {
  EXPECT_NE(ErrorOf([] { LoadConfig("", {"noequals"}); }).find("section.key=value"), std::string::npos);
  EXPECT_NE(ErrorOf([] { LoadConfig("", {"run.nope=1"}); }).find("run.nope"), std::string::npos);
  EXPECT_NE(ErrorOf([] { LoadConfig("", {"run.seed=1.5"}); }).find("run.seed"), std::string::npos);
  EXPECT_NE(ErrorOf([] { LoadConfig("", {"prompt.pack=maybe"}); }).find("true or false"), std::string::npos);
}

TEST(ConfigTest, CrossFieldValidation) {
  EXPECT_NE(ErrorOf([] { LoadConfig("", {"data.delimiter=;;"}); }).find("data.delimiter"), std::string::npos);
  EXPECT_NE(ErrorOf([] { LoadConfig("", {"data.unethical_values=[0]"}); }).find("both"), std::string::npos);
}

TEST(ConfigTest, ShowRoundTripsThroughLoad) {
  const Config a = LoadConfig("", {"run.seed=42", "data.label_threshold=0.25", "data.reason_column="});
  const std::string path = WriteTemp("g.yaml", ConfigToYaml(a));
  const Config b = LoadConfig(path);
  EXPECT_EQ(ConfigToYaml(a), ConfigToYaml(b));
  EXPECT_EQ(b.data.reason_column, "");
}

TEST(ConfigTest, HelpListsEverySchemaKey) {
  const std::string help = ConfigKeysHelp();
  for (const auto& f : ConfigSchema()) EXPECT_NE(help.find(f.key), std::string::npos) << f.key;
}

TEST(ConfigTest, EveryShippedConfigLoads) {
  namespace fs = std::filesystem;
  int count = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(DFAR_SOURCE_DIR) / "configs")) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() != ".yaml" || name == "templates.yaml") continue;
    EXPECT_NO_THROW(LoadConfig(entry.path().string())) << name;
    ++count;
  }
  EXPECT_GT(count, 0);
}

}  // namespace
}  // namespace dfar
