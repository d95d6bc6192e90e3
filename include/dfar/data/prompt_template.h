// Named prompt templates and the L / L+R objectives.
//
// Owns: turning an Example into a prompt (never supervised) and a target
// (supervised). Objective L: target = label word. Objective L+R: target =
// label word followed by the reason. Templates live in YAML (configs/
// templates.yaml) so users can edit or add them:
//
//   llama2:
//     prompt: "### Question: ... Statement: {statement} The statement is \n ### Answer: "
//     target_l: "{label}"
//     target_lr: "{label}. {reason}"
//
// Placeholders: {statement}, {label}, {reason}. Unknown placeholders are errors.
// Failure: LoadTemplates throws naming `file:line` for YAML errors, a missing
// field, or an unknown placeholder; Find throws listing the known names.
// Thread-safety: immutable after load.
#pragma once

#include <map>
#include <string>

#include "dfar/data/example.h"

namespace dfar {

enum class Objective { kLabel, kLabelReason };

// "l" -> kLabel, "lr" -> kLabelReason; throws otherwise.
Objective ParseObjective(const std::string& text);
const char* ObjectiveName(Objective objective);  // "l" / "lr"

struct PromptTemplate {
  std::string name;
  std::string prompt;     // Rendered with {statement}; the model sees it, loss ignores it.
  std::string target_l;   // Target for objective L.
  std::string target_lr;  // Target for objective L+R.
  std::string ethical_word = "ethical";
  std::string unethical_word = "unethical";
};

struct RenderedExample {
  std::string prompt;  // Unsupervised context.
  std::string target;  // Supervised completion (EOS is added by the tokenizer step).
};

RenderedExample Render(const PromptTemplate& tmpl, const Example& example, Objective objective);

// Only the prompt, for generation at eval time.
std::string RenderPrompt(const PromptTemplate& tmpl, const std::string& statement);

class TemplateLibrary {
 public:
  static TemplateLibrary Load(const std::string& path);
  const PromptTemplate& Find(const std::string& name) const;
  const std::map<std::string, PromptTemplate>& all() const { return templates_; }

 private:
  std::map<std::string, PromptTemplate> templates_;
  std::string source_;
};

}  // namespace dfar
