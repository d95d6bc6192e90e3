#include "dfar/data/prompt_template.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <set>
#include <vector>

#include "dfar/core/error.h"

namespace dfar {

Objective ParseObjective(const std::string& text) {
  if (text == "l") return Objective::kLabel;
  if (text == "lr") return Objective::kLabelReason;
  DFAR_THROW("unknown objective '", text, "'; expected 'l' (label only) or 'lr' (label then reason)");
}

const char* ObjectiveName(Objective objective) {
  return objective == Objective::kLabel ? "l" : "lr";
}

namespace {

const char* const kStatement = "statement";
const char* const kLabel = "label";
const char* const kReason = "reason";

struct Placeholder {
  size_t begin = 0;  // Offset of '{'.
  size_t end = 0;    // One past '}'.
  std::string name;
};

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

// Only `{identifier}` is a placeholder. Other braces ("{ }", "{{", JSON in a
// prompt) stay literal, so templates need no escaping rules.
std::vector<Placeholder> FindPlaceholders(const std::string& text) {
  std::vector<Placeholder> found;
  size_t pos = 0;
  while ((pos = text.find('{', pos)) != std::string::npos) {
    size_t end = pos + 1;
    while (end < text.size() && IsNameChar(text[end])) ++end;
    if (end > pos + 1 && end < text.size() && text[end] == '}') {
      found.push_back({pos, end + 1, text.substr(pos + 1, end - pos - 1)});
      pos = end + 1;
    } else {
      ++pos;
    }
  }
  return found;
}

// One pass over the template, never over substituted text: a statement that
// itself contains "{label}" must not be expanded again.
std::string Substitute(const std::string& text, const std::map<std::string, std::string>& values,
                       const std::string& what) {
  std::string out;
  size_t last = 0;
  for (const Placeholder& p : FindPlaceholders(text)) {
    auto it = values.find(p.name);
    DFAR_CHECK(it != values.end(), "placeholder {", p.name, "} is not allowed in ", what);
    out.append(text, last, p.begin - last);
    out += it->second;
    last = p.end;
  }
  out.append(text, last, std::string::npos);
  return out;
}

std::string LabelText(const PromptTemplate& tmpl, const Example& example) {
  if (example.label == kEthical) return tmpl.ethical_word;
  if (example.label == kUnethical) return tmpl.unethical_word;
  DFAR_THROW("example at line ", example.line, " has label ", example.label, "; expected ", kEthical, " (ethical) or ",
             kUnethical, " (unethical)");
}

}  // namespace

RenderedExample Render(const PromptTemplate& tmpl, const Example& example, Objective objective) {
  RenderedExample rendered;
  rendered.prompt = RenderPrompt(tmpl, example.statement);
  std::map<std::string, std::string> values = {{kLabel, LabelText(tmpl, example)}};
  if (objective == Objective::kLabel) {
    rendered.target = Substitute(tmpl.target_l, values, "template '" + tmpl.name + "' target_l");
    return rendered;
  }
  // An empty reason would silently turn L+R into L with a dangling ". ".
  DFAR_CHECK(!example.reason.empty(), "example at line ", example.line,
             " has no reason, but objective lr trains on reasons; use objective l or fill the reason");
  values[kReason] = example.reason;
  rendered.target = Substitute(tmpl.target_lr, values, "template '" + tmpl.name + "' target_lr");
  return rendered;
}

std::string RenderPrompt(const PromptTemplate& tmpl, const std::string& statement) {
  return Substitute(tmpl.prompt, {{kStatement, statement}}, "template '" + tmpl.name + "' prompt");
}

// ---- loading --------------------------------------------------------------

namespace {

// yaml-cpp marks are 0-based; users count lines from 1.
std::string Where(const std::string& path, const YAML::Node& node) {
  int line = node.Mark().line;
  return line >= 0 ? path + ":" + std::to_string(line + 1) : path;
}

// Names one field of one template in messages: "t.yaml:4: template 'x' field 'prompt'".
struct FieldRef {
  std::string where;
  std::string name;
  std::string field;
  std::string Describe() const { return where + ": template '" + name + "' field '" + field + "'"; }
};

int Count(const std::vector<Placeholder>& found, const std::string& name) {
  int n = 0;
  for (const Placeholder& p : found) n += p.name == name;
  return n;
}

size_t FirstOffset(const std::vector<Placeholder>& found, const std::string& name) {
  for (const Placeholder& p : found) {
    if (p.name == name) return p.begin;
  }
  return std::string::npos;
}

// `required` placeholders must appear exactly once, `forbidden` never; any
// name outside the known three is a typo we refuse to render literally.
void CheckPlaceholders(const FieldRef& ref, const std::vector<Placeholder>& found,
                       const std::vector<std::string>& required, const std::vector<std::string>& forbidden) {
  for (const Placeholder& p : found) {
    DFAR_CHECK(p.name == kStatement || p.name == kLabel || p.name == kReason, ref.Describe(), ": unknown placeholder {",
               p.name, "}; known: {statement}, {label}, {reason}");
  }
  for (const std::string& name : required) {
    DFAR_CHECK(Count(found, name) == 1, ref.Describe(), ": must contain {", name, "} exactly once (found ",
               Count(found, name), ")");
  }
  for (const std::string& name : forbidden) {
    DFAR_CHECK(Count(found, name) == 0, ref.Describe(), ": must not contain {", name, "}");
  }
}

void ValidateTemplate(const PromptTemplate& t, const std::map<std::string, std::string>& where) {
  // The prompt is never supervised, so the answer must not leak into it; the
  // targets are supervised, so copying the statement there would train echoing.
  CheckPlaceholders({where.at("prompt"), t.name, "prompt"}, FindPlaceholders(t.prompt), {kStatement},
                    {kLabel, kReason});
  CheckPlaceholders({where.at("target_l"), t.name, "target_l"}, FindPlaceholders(t.target_l), {kLabel},
                    {kStatement, kReason});
  FieldRef lr{where.at("target_lr"), t.name, "target_lr"};
  std::vector<Placeholder> found = FindPlaceholders(t.target_lr);
  CheckPlaceholders(lr, found, {kLabel, kReason}, {kStatement});
  // L and L+R must share the verdict's position so their label accuracy is comparable.
  DFAR_CHECK(FirstOffset(found, kLabel) < FirstOffset(found, kReason), lr.Describe(),
             ": {label} must come before {reason}");
  DFAR_CHECK(!t.ethical_word.empty() && !t.unethical_word.empty() && t.ethical_word != t.unethical_word,
             where.at("ethical_word"), ": template '", t.name,
             "': ethical_word and unethical_word must be non-empty and different");
}

std::string ReadString(const YAML::Node& value, const FieldRef& ref) {
  DFAR_CHECK(value.IsScalar(), ref.Describe(), ": expected a string");
  return value.as<std::string>();
}

const std::set<std::string>& KnownFields() {
  static const std::set<std::string> known = {"prompt", "target_l", "target_lr", "ethical_word", "unethical_word"};
  return known;
}

// `key` is the template's name node: messages about the template as a whole
// point at its name, which is where a reader looks for it.
PromptTemplate ParseTemplate(const std::string& path, const YAML::Node& key, const YAML::Node& node) {
  const std::string name = key.as<std::string>();
  const std::string here = Where(path, key);
  DFAR_CHECK(node.IsMap(), here, ": template '", name, "' must be a map with prompt, target_l and target_lr");
  PromptTemplate t;
  t.name = name;
  std::map<std::string, std::string*> slots = {{"prompt", &t.prompt},
                                               {"target_l", &t.target_l},
                                               {"target_lr", &t.target_lr},
                                               {"ethical_word", &t.ethical_word},
                                               {"unethical_word", &t.unethical_word}};
  // Every field defaults to the template's own line, for messages about absent fields.
  std::map<std::string, std::string> where;
  for (const std::string& field : KnownFields()) where[field] = here;
  for (const auto& kv : node) {
    std::string field = kv.first.as<std::string>();
    FieldRef ref{Where(path, kv.first), name, field};
    DFAR_CHECK(KnownFields().count(field), ref.Describe(),
               ": unknown field; known: prompt, target_l, target_lr, ethical_word, unethical_word");
    *slots.at(field) = ReadString(kv.second, ref);
    where[field] = Where(path, kv.second);
  }
  for (const char* field : {"prompt", "target_l", "target_lr"}) {
    DFAR_CHECK(node[field].IsDefined(), here, ": template '", name, "' is missing field '", field, "'");
  }
  ValidateTemplate(t, where);
  return t;
}

YAML::Node LoadYaml(const std::string& path) {
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    DFAR_THROW("cannot open templates file '", path, "'");
  } catch (const YAML::ParserException& e) {
    DFAR_THROW(path, ":", e.mark.line + 1, ": YAML syntax error: ", e.msg);
  }
}

}  // namespace

TemplateLibrary TemplateLibrary::Load(const std::string& path) {
  YAML::Node root = LoadYaml(path);
  DFAR_CHECK(root.IsMap() && root.size() > 0, Where(path, root),
             ": expected a map of template name -> {prompt, target_l, target_lr}");
  TemplateLibrary library;
  library.source_ = path;
  try {
    for (const auto& kv : root) {
      std::string name = kv.first.as<std::string>();
      DFAR_CHECK(!library.templates_.count(name), Where(path, kv.first), ": template '", name, "' is defined twice");
      library.templates_[name] = ParseTemplate(path, kv.first, kv.second);
    }
  } catch (const YAML::Exception& e) {
    // Conversion failures (a list where a name belongs) carry the mark too.
    DFAR_THROW(path, ":", e.mark.line + 1, ": ", e.msg);
  }
  return library;
}

const PromptTemplate& TemplateLibrary::Find(const std::string& name) const {
  auto it = templates_.find(name);
  if (it != templates_.end()) return it->second;
  std::string known;
  for (const auto& kv : templates_) known += (known.empty() ? "" : ", ") + kv.first;
  DFAR_THROW("unknown template '", name, "' in ", source_.empty() ? "the template library" : source_,
             "; known: ", known);
}

}  // namespace dfar
