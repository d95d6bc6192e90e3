#include "dfar/core/config.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "dfar/core/error.h"

namespace dfar {
namespace {

// ---- scalar parsing: strict, so "1e-3x" or "yes please" never slip through.

std::string ScalarOf(const YAML::Node& node, const std::string& where, const char* type) {
  DFAR_CHECK(node.IsScalar(), where, ": expected a ", type, " but found a ",
             node.IsSequence() ? "list"
             : node.IsMap()    ? "mapping"
                               : "null value");
  return node.Scalar();
}

double ParseDouble(const YAML::Node& node, const std::string& where) {
  const std::string text = ScalarOf(node, where, "number");
  errno = 0;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  DFAR_CHECK(!text.empty() && end == text.c_str() + text.size() && errno == 0 && std::isfinite(value), where,
             ": expected a finite number, got '", text, "'");
  return value;
}

int64_t ParseInt(const YAML::Node& node, const std::string& where) {
  const std::string text = ScalarOf(node, where, "integer");
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  DFAR_CHECK(!text.empty() && end == text.c_str() + text.size() && errno == 0, where, ": expected an integer, got '",
             text, "'");
  return value;
}

bool ParseBool(const YAML::Node& node, const std::string& where) {
  const std::string text = ScalarOf(node, where, "boolean");
  if (text == "true" || text == "True" || text == "on") return true;
  if (text == "false" || text == "False" || text == "off") return false;
  DFAR_THROW(where, ": expected true or false, got '", text, "'");
}

std::string Quote(const std::string& s) {
  YAML::Emitter out;
  out << YAML::DoubleQuoted << s;
  return out.c_str();
}

std::string ShowDouble(double v) {
  std::ostringstream os;
  os.precision(std::numeric_limits<double>::max_digits10);
  os << v;
  std::string s = os.str();
  // Keep YAML readers (and humans) seeing a float, not an int.
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

// ---- field builders. Each takes an accessor that returns a reference to the
// field in a Config, so the schema is the single place that names each key.

template <typename T>
using Accessor = std::function<T&(Config&)>;

ConfigField FloatField(std::string key, Accessor<double> at, double lo, double hi, std::string doc) {
  ConfigField f;
  f.key = key;
  f.type = "float";
  f.doc = std::move(doc);
  f.parse = [=](Config& c, const YAML::Node& n, const std::string& where) {
    const double v = ParseDouble(n, where);
    DFAR_CHECK(v >= lo && v <= hi, where, ": ", key, "=", v, " is out of range [", lo, ", ", hi, "]");
    at(c) = v;
  };
  f.show = [=](const Config& c) { return ShowDouble(at(const_cast<Config&>(c))); };
  return f;
}

template <typename Int>
ConfigField IntField(std::string key, Accessor<Int> at, int64_t lo, int64_t hi, std::string doc) {
  ConfigField f;
  f.key = key;
  f.type = "int";
  f.doc = std::move(doc);
  f.parse = [=](Config& c, const YAML::Node& n, const std::string& where) {
    const int64_t v = ParseInt(n, where);
    DFAR_CHECK(v >= lo && v <= hi, where, ": ", key, "=", v, " is out of range [", lo, ", ", hi, "]");
    at(c) = static_cast<Int>(v);
  };
  f.show = [=](const Config& c) { return std::to_string(at(const_cast<Config&>(c))); };
  return f;
}

ConfigField BoolField(std::string key, Accessor<bool> at, std::string doc) {
  ConfigField f;
  f.key = key;
  f.type = "bool";
  f.doc = std::move(doc);
  f.parse = [=](Config& c, const YAML::Node& n, const std::string& where) { at(c) = ParseBool(n, where); };
  f.show = [=](const Config& c) { return std::string(at(const_cast<Config&>(c)) ? "true" : "false"); };
  return f;
}

ConfigField StringField(std::string key, Accessor<std::string> at, std::string doc) {
  ConfigField f;
  f.key = key;
  f.type = "string";
  f.doc = std::move(doc);
  f.parse = [=](Config& c, const YAML::Node& n, const std::string& where) {
    at(c) = n.IsNull() ? std::string() : ScalarOf(n, where, "string");
  };
  f.show = [=](const Config& c) { return Quote(at(const_cast<Config&>(c))); };
  return f;
}

ConfigField EnumField(std::string key, Accessor<std::string> at, std::vector<std::string> choices, std::string doc) {
  ConfigField f = StringField(key, at, std::move(doc));
  std::string joined;
  for (const auto& ch : choices) joined += (joined.empty() ? "" : "|") + ch;
  f.type = "enum(" + joined + ")";
  f.parse = [=](Config& c, const YAML::Node& n, const std::string& where) {
    const std::string v = ScalarOf(n, where, "string");
    bool ok = false;
    for (const auto& ch : choices) ok = ok || ch == v;
    DFAR_CHECK(ok, where, ": ", key, "='", v, "' is not one of ", joined);
    at(c) = v;
  };
  return f;
}

ConfigField ListField(std::string key, Accessor<std::vector<std::string>> at, std::string doc) {
  ConfigField f;
  f.key = key;
  f.type = "list";
  f.doc = std::move(doc);
  f.parse = [=](Config& c, const YAML::Node& n, const std::string& where) {
    std::vector<std::string> values;
    if (n.IsScalar()) {
      values.push_back(n.Scalar());
    } else {
      DFAR_CHECK(n.IsSequence(), where, ": ", key, " expects a list of strings");
      for (const auto& item : n) values.push_back(ScalarOf(item, where, "string"));
    }
    at(c) = std::move(values);
  };
  f.show = [=](const Config& c) {
    std::string s = "[";
    for (const auto& v : at(const_cast<Config&>(c))) s += (s.size() > 1 ? ", " : "") + Quote(v);
    return s + "]";
  };
  return f;
}

#define DFAR_AT(expr)       \
  [](Config & c) -> auto& { \
    return c.expr;          \
  }

std::vector<ConfigField> BuildSchema() {
  const int64_t kBig = int64_t{1} << 40;
  return {
      StringField("run.dir", DFAR_AT(run.dir), "run directory: logs/, metrics.jsonl, checkpoints"),
      IntField<uint64_t>("run.seed", DFAR_AT(run.seed), 0, kBig, "seed for shuffles, splits and init"),
      EnumField("run.log_level", DFAR_AT(run.log_level), {"trace", "debug", "info", "warn", "error"},
                "log level (env DFAR_LOG_LEVEL overrides)"),
      BoolField("run.log_all_ranks_to_console", DFAR_AT(run.log_all_ranks_to_console),
                "every rank logs to the console, not only rank 0"),
      StringField("model.path", DFAR_AT(model.path), "pretrained model: .gguf file or HF directory"),
      EnumField("model.init", DFAR_AT(model.init), {"pretrained", "random"},
                "pretrained: weights from model.path; random: its config and tokenizer, weights from run.seed"),
      EnumField("model.device", DFAR_AT(model.device), {"auto", "cpu", "cuda"}, "compute device"),
      EnumField("model.dtype", DFAR_AT(model.dtype), {"auto", "fp32", "bf16"},
                "compute dtype (auto: bf16 on CUDA; on CPU bf16 only where a probe GEMM shows it faster); master "
                "weights stay fp32"),
      EnumField("model.attention", DFAR_AT(model.attention), {"sdpa", "math"}, "attention kernel"),
      EnumField("model.quant", DFAR_AT(model.quant), {"none", "nf4"},
                "frozen base weights: none (the compute dtype) or nf4 (QLoRA: 4-bit NormalFloat, double-quantised "
                "scales, dequantised per matmul; needs lora.enabled)"),
      BoolField("model.activation_checkpointing", DFAR_AT(model.activation_checkpointing),
                "recompute each block in backward to save memory"),
      BoolField("model.allow_tf32", DFAR_AT(model.allow_tf32),
                "TF32 tensor cores for fp32 matmuls on CUDA (off: fp32 stays fp32)"),
      BoolField("lora.enabled", DFAR_AT(lora.enabled), "train LoRA adapters (false: full fine-tuning)"),
      IntField<int64_t>("lora.rank", DFAR_AT(lora.rank), 1, 4096, "LoRA rank r"),
      FloatField("lora.alpha", DFAR_AT(lora.alpha), 0.0, 1e6, "LoRA alpha (scale = alpha / r)"),
      FloatField("lora.dropout", DFAR_AT(lora.dropout), 0.0, 0.99, "dropout on the LoRA input"),
      ListField("lora.targets", DFAR_AT(lora.targets), "projections to adapt: q k v o gate up down"),
      IntField<int64_t>("dist.zero", DFAR_AT(dist.zero), 0, 3,
                        "ZeRO stage: 0 off, 1 optimizer state sharded, 2 + gradients sharded, 3 + parameters "
                        "sharded (gathered per layer)"),
      FloatField("dist.bucket_mb", DFAR_AT(dist.bucket_mb), 0.001, 4096, "gradient all-reduce bucket size (MB)"),
      FloatField("dist.collective_timeout_s", DFAR_AT(dist.collective_timeout_s), 0.1, 1e6,
                 "deadline of one collective before the job aborts"),
      EnumField("dist.reduce_dtype", DFAR_AT(dist.reduce_dtype), {"fp32", "param"},
                "dtype bf16 gradients are accumulated and reduced in (param: the parameters' own)"),
      IntField<int64_t>("ckpt.every", DFAR_AT(ckpt.every), 0, kBig, "checkpoint every K steps (0 = at the end)"),
      IntField<int64_t>("ckpt.keep_last", DFAR_AT(ckpt.keep_last), 0, 1 << 20, "complete checkpoints kept (0 = all)"),
      BoolField("ckpt.async", DFAR_AT(ckpt.async), "write checkpoints in the background"),
      EnumField("eval.mode", DFAR_AT(eval.mode), {"generate", "likelihood"},
                "generate + parse the verdict, or compare label likelihoods"),
      IntField<int64_t>("eval.limit", DFAR_AT(eval.limit), 0, kBig, "evaluate N examples (0 = all)"),
      EnumField("eval.subset", DFAR_AT(eval.subset), {"head", "stride"},
                "which eval.limit examples: the first N, or N spread evenly over the test file"),
      IntField<int64_t>("eval.batch_size", DFAR_AT(eval.batch_size), 1, 4096, "prompts decoded together per rank"),
      IntField<int64_t>("eval.max_new_tokens", DFAR_AT(eval.max_new_tokens), 1, 1 << 16, "generation budget"),
      StringField("eval.out_dir", DFAR_AT(eval.out_dir), "report directory (default <run.dir>/eval)"),
      StringField("eval.encoder", DFAR_AT(eval.encoder),
                  "sentence-encoder dir that reads generated reasons (similarity, automatic MAR); empty = off"),
      IntField<int64_t>("eval.mar_k", DFAR_AT(eval.mar_k), 1, 1 << 16,
                        "automatic MAR: nearest human reasons whose majority label judges a generated reason"),
      StringField("eval.mar_bank", DFAR_AT(eval.mar_bank),
                  "CSV of labelled human reasons for automatic MAR (default data.train)"),
      IntField<int64_t>("eval.mar_bank_limit", DFAR_AT(eval.mar_bank_limit), 0, kBig,
                        "automatic MAR: use N bank reasons spread evenly over the bank file (0 = all)"),
      IntField<int64_t>("eval.bootstrap_resamples", DFAR_AT(eval.bootstrap_resamples), 10, 1 << 20,
                        "bootstrap resamples for macro-F1 and similarity intervals"),
      StringField("data.train", DFAR_AT(data.train), "training CSV"),
      StringField("data.test", DFAR_AT(data.test), "test CSV (evaluation)"),
      StringField("data.delimiter", DFAR_AT(data.delimiter), "CSV field delimiter, one character"),
      StringField("data.text_column", DFAR_AT(data.text_column), "header of the statement/text column"),
      StringField("data.label_column", DFAR_AT(data.label_column), "header of the label column"),
      StringField("data.reason_column", DFAR_AT(data.reason_column), "header of the reason column; empty if none"),
      EnumField("data.label_rule", DFAR_AT(data.label_rule), {"map", "threshold"},
                "map: exact label values; threshold: numeric score >= data.label_threshold is unethical"),
      ListField("data.ethical_values", DFAR_AT(data.ethical_values), "label cells meaning ethical (0)"),
      ListField("data.unethical_values", DFAR_AT(data.unethical_values), "label cells meaning unethical (1)"),
      FloatField("data.label_threshold", DFAR_AT(data.label_threshold), -1e9, 1e9,
                 "threshold for label_rule=threshold"),
      FloatField("data.val_fraction", DFAR_AT(data.val_fraction), 0.0, 0.5,
                 "fraction of train held out for validation"),
      IntField<int64_t>("data.limit", DFAR_AT(data.limit), 0, kBig, "use only N rows (0 = all)"),
      EnumField("data.subset", DFAR_AT(data.subset), {"head", "stride"},
                "which data.limit rows: the first N, or N spread evenly over the file (files grouped by source)"),
      EnumField("prompt.objective", DFAR_AT(prompt.objective), {"l", "lr"}, "l: label only; lr: label + reason"),
      StringField("prompt.template_name", DFAR_AT(prompt.template_name), "template name in prompt.templates_file"),
      StringField("prompt.templates_file", DFAR_AT(prompt.templates_file), "YAML file of named templates"),
      IntField<int64_t>("prompt.max_seq_len", DFAR_AT(prompt.max_seq_len), 8, 1 << 20, "tokens per sequence"),
      BoolField("prompt.pack", DFAR_AT(prompt.pack), "pack several examples into one sequence"),
      StringField("tokenizer.path", DFAR_AT(tokenizer.path), "SentencePiece .model (empty: the model's own)"),
      IntField<int64_t>("sampler.micro_batch", DFAR_AT(sampler.micro_batch), 1, 1 << 16,
                        "examples per rank per micro-step"),
      EnumField("sampler.remainder", DFAR_AT(sampler.remainder), {"drop", "wrap"},
                "equalise train shards by dropping or wrapping the remainder"),
      BoolField("sampler.group_by_length", DFAR_AT(sampler.group_by_length), "batch examples of similar length"),
      IntField<int64_t>("sampler.group_window", DFAR_AT(sampler.group_window), 1, 1 << 20,
                        "examples sorted together when grouping by length"),
      EnumField("train.optimizer", DFAR_AT(train.optimizer), {"adamw", "sgd"},
                "adamw (the paper's); sgd: plain SGD, no momentum (linear in the gradients)"),
      FloatField("train.lr", DFAR_AT(train.lr), 0.0, 10.0, "peak learning rate"),
      EnumField("train.schedule", DFAR_AT(train.schedule), {"constant", "linear", "cosine"},
                "learning-rate schedule after warmup"),
      FloatField("train.warmup_ratio", DFAR_AT(train.warmup_ratio), 0.0, 1.0, "fraction of steps spent warming up"),
      FloatField("train.weight_decay", DFAR_AT(train.weight_decay), 0.0, 10.0, "decoupled weight decay"),
      FloatField("train.grad_clip", DFAR_AT(train.grad_clip), 0.0, 1e6, "clip the global gradient norm (0 = off)"),
      IntField<int64_t>("train.epochs", DFAR_AT(train.epochs), 1, 1 << 20, "passes over the training data"),
      IntField<int64_t>("train.max_steps", DFAR_AT(train.max_steps), 0, kBig,
                        "cap on optimizer steps (0 = epochs decide)"),
      IntField<int64_t>("train.grad_accum", DFAR_AT(train.grad_accum), 1, 1 << 16, "micro-batches per optimizer step"),
      IntField<int64_t>("train.eval_every", DFAR_AT(train.eval_every), 0, kBig,
                        "validation loss every K steps (0 = never)"),
      IntField<int64_t>("train.log_every", DFAR_AT(train.log_every), 1, kBig, "progress line every K steps"),
      IntField<int64_t>("train.max_consecutive_skips", DFAR_AT(train.max_consecutive_skips), 1, 1 << 20,
                        "abort after K consecutive steps with a non-finite loss or gradient norm"),
  };
}

#undef DFAR_AT

const ConfigField* FindField(const std::string& key) {
  for (const auto& f : ConfigSchema())
    if (f.key == key) return &f;
  return nullptr;
}

bool IsSection(const std::string& name) {
  for (const auto& f : ConfigSchema())
    if (f.key.compare(0, name.size() + 1, name + ".") == 0) return true;
  return false;
}

// A mapping key as text. YAML also allows lists and mappings as keys ("? [a]"),
// which as<std::string>() would reject with an exception that names nothing.
std::string KeyName(const YAML::Node& key, const std::string& path) {
  DFAR_CHECK(key.IsScalar(), path, ":", key.Mark().line + 1, ": a key must be a plain name, not a ",
             key.IsSequence() ? "list"
             : key.IsMap()    ? "mapping"
                              : "null value");
  return key.Scalar();
}

std::string Where(const std::string& path, const YAML::Mark& mark, const std::string& key) {
  return path + ":" + std::to_string(mark.line + 1) + ": key " + key;
}

void ApplySection(Config& config, const std::string& path, const std::string& section, const YAML::Node& body) {
  DFAR_CHECK(body.IsMap(), path, ":", body.Mark().line + 1, ": section '", section, "' must be a mapping");
  for (const auto& kv : body) {
    const std::string key = section + "." + KeyName(kv.first, path);
    const ConfigField* field = FindField(key);
    DFAR_CHECK(field != nullptr, path, ":", kv.first.Mark().line + 1, ": unknown key '", key,
               "' (see `dfar config keys`)");
    field->parse(config, kv.second, Where(path, kv.first.Mark(), key));
  }
}

// `source` names the text in messages (a file path, or e.g. "checkpoint index").
void ApplyYamlText(Config& config, const std::string& text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    DFAR_THROW(source, ":", e.mark.line + 1, ":", e.mark.column + 1, ": YAML syntax error: ", e.msg);
  }
  if (root.IsNull()) return;  // An empty file means all defaults.
  DFAR_CHECK(root.IsMap(), source, ": the top level must be a mapping of sections");
  for (const auto& kv : root) {
    const std::string section = KeyName(kv.first, source);
    DFAR_CHECK(IsSection(section), source, ":", kv.first.Mark().line + 1, ": unknown section '", section,
               "' (see `dfar config keys`)");
    ApplySection(config, source, section, kv.second);
  }
}

void ApplyYamlFile(Config& config, const std::string& path) {
  std::ifstream in(path);
  DFAR_CHECK(in.good(), "cannot open config file '", path, "'");
  std::stringstream text;
  text << in.rdbuf();
  ApplyYamlText(config, text.str(), path);
}

}  // namespace

const std::vector<ConfigField>& ConfigSchema() {
  static const std::vector<ConfigField> schema = BuildSchema();
  return schema;
}

void ApplyOverride(Config& config, const std::string& assignment) {
  const auto eq = assignment.find('=');
  DFAR_CHECK(eq != std::string::npos && eq > 0, "override '", assignment, "' is not of the form section.key=value");
  const std::string key = assignment.substr(0, eq);
  const ConfigField* field = FindField(key);
  DFAR_CHECK(field != nullptr, "override '", assignment, "': unknown key '", key, "' (see `dfar config keys`)");
  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    DFAR_THROW("override '", assignment, "': cannot parse value: ", e.msg);
  }
  field->parse(config, value, "override '" + assignment + "'");
}

Config LoadConfigText(const std::string& yaml, const std::string& source) {
  Config config;
  ApplyYamlText(config, yaml, source);
  config.Validate();
  return config;
}

Config LoadConfig(const std::string& path, const std::vector<std::string>& overrides) {
  Config config;
  if (!path.empty()) ApplyYamlFile(config, path);
  for (const auto& o : overrides) ApplyOverride(config, o);
  config.Validate();
  return config;
}

void Config::Validate() const {
  DFAR_CHECK(data.delimiter.size() == 1, "data.delimiter must be exactly one character, got '", data.delimiter, "'");
  DFAR_CHECK(data.delimiter != "\"" && data.delimiter != "\n" && data.delimiter != "\r",
             "data.delimiter cannot be a quote or a newline");
  DFAR_CHECK(!data.text_column.empty(), "data.text_column must not be empty");
  DFAR_CHECK(!data.label_column.empty(), "data.label_column must not be empty");
  if (data.label_rule == "map") {
    DFAR_CHECK(!data.ethical_values.empty() && !data.unethical_values.empty(),
               "data.label_rule=map needs data.ethical_values and data.unethical_values");
    for (const auto& v : data.ethical_values)
      for (const auto& u : data.unethical_values)
        DFAR_CHECK(v != u, "label value '", v, "' is in both data.ethical_values and data.unethical_values");
  }
  DFAR_CHECK(sampler.group_window >= sampler.micro_batch || !sampler.group_by_length, "sampler.group_window (",
             sampler.group_window, ") must be >= sampler.micro_batch (", sampler.micro_batch, ")");
  DFAR_CHECK(model.quant != "nf4" || lora.enabled,
             "model.quant=nf4 stores the frozen base in 4 bits: it needs lora.enabled=true (full fine-tuning trains "
             "the base weights themselves)");
}

std::string ConfigToYaml(const Config& config) {
  std::string out;
  std::string section;
  for (const auto& f : ConfigSchema()) {
    const auto dot = f.key.find('.');
    const std::string s = f.key.substr(0, dot);
    if (s != section) {
      out += s + ":\n";
      section = s;
    }
    out += "  " + f.key.substr(dot + 1) + ": " + f.show(config) + "\n";
  }
  return out;
}

std::string ConfigKeysHelp() {
  const Config defaults;
  std::ostringstream os;
  for (const auto& f : ConfigSchema()) {
    os << "  " << f.key << " (" << f.type << ", default " << f.show(defaults) << ")\n      " << f.doc << "\n";
  }
  return os.str();
}

}  // namespace dfar
