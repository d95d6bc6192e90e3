#include "dfar/data/prompt_template.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "dfar/core/error.h"

namespace dfar {
namespace {

const std::string kShipped = std::string(DFAR_SOURCE_DIR) + "/configs/templates.yaml";

Example MakeExample(int label, std::string statement, std::string reason) {
  Example ex;
  ex.index = 7;
  ex.line = 9;
  ex.statement = std::move(statement);
  ex.label = label;
  ex.reason = std::move(reason);
  return ex;
}

// Writes `text` to a fresh file and returns its path.
std::string WriteTemp(const std::string& name, const std::string& text) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "dfar_template_test";
  std::filesystem::create_directories(dir);
  const auto path = dir / name;
  std::ofstream(path) << text;
  return path.string();
}

// Loads `yaml` and returns the error message, or "" if it loaded.
std::string LoadError(const std::string& yaml) {
  const std::string path = WriteTemp("t.yaml", yaml);
  try {
    TemplateLibrary::Load(path);
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

const char* const kGood =
    "basic:\n"
    "  prompt: \"Q: {statement}\\nA: \"\n"
    "  target_l: \"{label}\"\n"
    "  target_lr: \"{label}. {reason}\"\n";

TEST(TemplateObjective, ParsesAndNames) {
  EXPECT_EQ(ParseObjective("l"), Objective::kLabel);
  EXPECT_EQ(ParseObjective("lr"), Objective::kLabelReason);
  EXPECT_STREQ(ObjectiveName(Objective::kLabel), "l");
  EXPECT_STREQ(ObjectiveName(Objective::kLabelReason), "lr");
  EXPECT_THROW(ParseObjective("L+R"), Error);
}

TEST(TemplateShipped, HasTheThreeTemplates) {
  const TemplateLibrary lib = TemplateLibrary::Load(kShipped);
  for (const char* name : {"llama2", "mistral", "chatml"}) {
    EXPECT_EQ(lib.Find(name).name, name);
  }
}

TEST(TemplateShipped, Llama2MatchesThePaper) {
  const TemplateLibrary lib = TemplateLibrary::Load(kShipped);
  const Example ex = MakeExample(kUnethical, "I crushed the frog", "Hurting animals is wrong.");
  const RenderedExample lr = Render(lib.Find("llama2"), ex, Objective::kLabelReason);
  EXPECT_EQ(lr.prompt + lr.target,
            "### Question: Evaluate whether the statement is ethical or unethical with reason. Statement: I crushed "
            "the frog The statement is \n ### Answer: unethical. Hurting animals is wrong.");
  EXPECT_EQ(lr.target, " unethical. Hurting animals is wrong.");
  const RenderedExample l = Render(lib.Find("llama2"), ex, Objective::kLabel);
  EXPECT_EQ(l.prompt, lr.prompt);
  EXPECT_EQ(l.target, " unethical");
}

TEST(TemplateShipped, EveryTargetOpensWithTheVerdict) {
  const TemplateLibrary lib = TemplateLibrary::Load(kShipped);
  const Example ex = MakeExample(kEthical, "I fed the cat.", "Caring for pets is kind.");
  for (const auto& [name, tmpl] : lib.all()) {
    const std::string l = Render(tmpl, ex, Objective::kLabel).target;
    const std::string lr = Render(tmpl, ex, Objective::kLabelReason).target;
    EXPECT_NE(l.find("ethical"), std::string::npos) << name;
    EXPECT_EQ(lr.compare(0, l.size(), l), 0) << name << ": L+R target should extend the L target";
    EXPECT_NE(lr.find("Caring for pets is kind."), std::string::npos) << name;
    EXPECT_EQ(RenderPrompt(tmpl, ex.statement), Render(tmpl, ex, Objective::kLabel).prompt) << name;
  }
}

TEST(TemplateRender, DoesNotExpandPlaceholdersInsideTheData) {
  PromptTemplate t;
  t.name = "t";
  t.prompt = "S: {statement}";
  t.target_l = "{label}";
  t.target_lr = "{label}: {reason}";
  const Example ex = MakeExample(kEthical, "say {label} {reason}", "because {statement}");
  const RenderedExample r = Render(t, ex, Objective::kLabelReason);
  EXPECT_EQ(r.prompt, "S: say {label} {reason}");
  EXPECT_EQ(r.target, "ethical: because {statement}");
}

TEST(TemplateRender, UsesCustomLabelWordsAndKeepsLiteralBraces) {
  PromptTemplate t;
  t.name = "t";
  t.prompt = "{ \"text\": \"{statement}\" }";
  t.target_l = "{label}";
  t.target_lr = "{label} {reason}";
  t.ethical_word = "fine";
  t.unethical_word = "wrong";
  EXPECT_EQ(Render(t, MakeExample(kUnethical, "x", "r"), Objective::kLabel).target, "wrong");
  EXPECT_EQ(Render(t, MakeExample(kEthical, "x", "r"), Objective::kLabel).target, "fine");
  EXPECT_EQ(RenderPrompt(t, "hi"), "{ \"text\": \"hi\" }");
}

TEST(TemplateRender, RejectsBadLabelsAndMissingReasons) {
  const TemplateLibrary lib = TemplateLibrary::Load(kShipped);
  const PromptTemplate& t = lib.Find("llama2");
  EXPECT_THROW(Render(t, MakeExample(2, "x", "r"), Objective::kLabel), Error);
  try {
    Render(t, MakeExample(kEthical, "x", ""), Objective::kLabelReason);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("line 9"), std::string::npos) << e.message();
  }
  // Objective L needs no reason.
  EXPECT_EQ(Render(t, MakeExample(kEthical, "x", ""), Objective::kLabel).target, " ethical");
}

TEST(TemplateLoad, ReadsOptionalWords) {
  const std::string path = WriteTemp("words.yaml", std::string(kGood) +
                                                       "  ethical_word: \"moral\"\n"
                                                       "  unethical_word: \"immoral\"\n");
  const TemplateLibrary lib = TemplateLibrary::Load(path);
  EXPECT_EQ(lib.Find("basic").ethical_word, "moral");
  EXPECT_EQ(lib.Find("basic").unethical_word, "immoral");
  EXPECT_EQ(lib.Find("basic").prompt, "Q: {statement}\nA: ");
}

TEST(TemplateLoad, UnknownPlaceholderNamesFileAndLine) {
  const std::string msg = LoadError(
      "basic:\n"
      "  prompt: \"Q: {statement}\"\n"
      "  target_l: \"{label}\"\n"
      "  target_lr: \"{label}. {reasn}\"\n");
  EXPECT_NE(msg.find("t.yaml:4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("{reasn}"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'basic'"), std::string::npos) << msg;
}

TEST(TemplateLoad, MissingFieldPointsAtTheTemplateName) {
  const std::string msg =
      LoadError(std::string(kGood) + "other:\n  prompt: \"{statement}\"\n  target_l: \"{label}\"\n");
  EXPECT_NE(msg.find("t.yaml:5: template 'other' is missing field 'target_lr'"), std::string::npos) << msg;
}

TEST(TemplateLoad, YamlSyntaxErrorNamesFileAndLine) {
  const std::string msg = LoadError("basic:\n  prompt: \"Q: {statement}\"\n  target_l: [unclosed\n");
  EXPECT_NE(msg.find("t.yaml:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("YAML syntax error"), std::string::npos) << msg;
}

TEST(TemplateLoad, RejectsBrokenTemplates) {
  struct Case {
    const char* yaml;
    const char* expect;  // Substring of the message.
  };
  const Case cases[] = {
      {"a:\n  prompt: \"Q\"\n  target_l: \"{label}\"\n  target_lr: \"{label} {reason}\"\n", "{statement}"},
      {"a:\n  prompt: \"{statement} {statement}\"\n  target_l: \"{label}\"\n  target_lr: \"{label} {reason}\"\n",
       "exactly once"},
      {"a:\n  prompt: \"{statement} {label}\"\n  target_l: \"{label}\"\n  target_lr: \"{label} {reason}\"\n",
       "must not contain {label}"},
      {"a:\n  prompt: \"{statement}\"\n  target_l: \"{label}\"\n  target_lr: \"{label}\"\n", "{reason}"},
      {"a:\n  prompt: \"{statement}\"\n  target_l: \"{label} {reason}\"\n  target_lr: \"{label} {reason}\"\n",
       "target_l"},
      {"a:\n  prompt: \"{statement}\"\n  target_l: \"{label}\"\n  target_lr: \"{reason} {label}\"\n", "before"},
      {"a:\n  prompt: \"{statement}\"\n  target_l: \"{label}\"\n", "missing field 'target_lr'"},
      {"a:\n  prompt: \"{statement}\"\n  target_l: \"{label}\"\n  target_lr: \"{label} {reason}\"\n  tgt: \"x\"\n",
       "unknown field"},
      {"a:\n  prompt: [\"{statement}\"]\n  target_l: \"{label}\"\n  target_lr: \"{label} {reason}\"\n",
       "expected a string"},
      {"a: 3\n", "must be a map"},
      {"- a\n", "expected a map"},
  };
  for (const Case& c : cases) {
    const std::string msg = LoadError(c.yaml);
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "yaml:\n" << c.yaml << "message: " << msg;
    EXPECT_NE(msg.find("t.yaml"), std::string::npos) << msg;
  }
}

TEST(TemplateLoad, MissingFileAndUnknownNameAreClear) {
  EXPECT_THROW(TemplateLibrary::Load("/nonexistent/templates.yaml"), Error);
  const TemplateLibrary lib = TemplateLibrary::Load(kShipped);
  try {
    lib.Find("llama3");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("llama2"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("chatml"), std::string::npos) << e.message();
  }
}

}  // namespace
}  // namespace dfar
