// dfar::Config — the typed, validated run configuration.
//
// Owns: every setting of a dfar run, grouped by section. Each field has an
// in-class default and a comment on its trade-off. A YAML file and
// `section.key=value` overrides are applied through one schema
// (ConfigSchema()), which is also the source of `--help` override lists and
// `dfar config keys`, so documented and parsed keys cannot drift.
//
// Failure: LoadConfig/ApplyOverride throw dfar::Error naming the key path and
// `file:line` (or the override text) for unknown keys, wrong types, values out
// of range, and YAML syntax errors. Validate() checks cross-field rules.
// Thread-safety: plain data; load on one thread, then read from any.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace YAML {
class Node;
}

namespace dfar {

struct RunConfig {
  std::string dir = "runs/default";  // Where logs, metrics and checkpoints go.
  uint64_t seed = 1234;              // Seeds shuffles, splits, dropout, init.
  std::string log_level = "info";    // trace|debug|info|warn|error; env DFAR_LOG_LEVEL wins.
  bool log_all_ranks_to_console = false;  // True helps debugging; noisy at scale.
};

// Which columns of a CSV hold the text, label and reason, and how a label
// cell maps to 0 (ethical) / 1 (unethical). Defaults read DFAR itself.
struct DataConfig {
  std::string train = "../shared/data/dfar/DFAR_trainset.csv";
  std::string test = "../shared/data/dfar/DFAR_testset.csv";
  std::string delimiter = ",";             // One character; ETHOS uses ';'.
  std::string text_column = "Statement";
  std::string label_column = "Label";
  std::string reason_column = "Reason";    // Empty: the dataset has no reasons.
  std::string label_rule = "map";          // map: exact values; threshold: number >= t is unethical.
  std::vector<std::string> ethical_values = {"0"};
  std::vector<std::string> unethical_values = {"1"};
  double label_threshold = 0.5;            // Used by label_rule=threshold.
  double val_fraction = 0.1;               // Held out of train for eval loss; 0 disables.
  int64_t limit = 0;                       // Use only the first N rows (0 = all); for smoke runs.
};

// How an example becomes a token sequence.
struct PromptConfig {
  std::string objective = "lr";        // l: label only; lr: label then reason (the paper's L+R).
  std::string template_name = "llama2";  // A template from templates_file.
  std::string templates_file = "configs/templates.yaml";
  int64_t max_seq_len = 512;           // Longer examples are truncated from the reason's end.
  bool pack = false;                   // Pack several examples per sequence (segment ids keep them apart).
};

struct TokenizerConfig {
  std::string path;                    // SentencePiece .model, or empty to take the model's own.
};

// How the sampler deals out examples to ranks and batches.
struct SamplerConfig {
  int64_t micro_batch = 4;             // Examples per rank per micro-step.
  std::string remainder = "drop";      // drop|wrap: how train shards are made equal.
  bool group_by_length = true;         // Batches of similar length waste less padding.
  int64_t group_window = 64;           // Examples sorted together when grouping; bigger = less padding, less randomness.
};

struct Config {
  RunConfig run;
  DataConfig data;
  PromptConfig prompt;
  TokenizerConfig tokenizer;
  SamplerConfig sampler;

  // Cross-field rules (e.g. threshold rule needs no value lists). Throws.
  void Validate() const;
};

// One documented key of the schema.
struct ConfigField {
  std::string key;            // "train.lr"
  std::string type;           // "float", "int", "bool", "string", "list", "enum(a|b)"
  std::string doc;            // One line.
  std::function<void(Config&, const YAML::Node&, const std::string& where)> parse;
  std::function<std::string(const Config&)> show;  // YAML flow text of the value.
};

// Every key, in display order.
const std::vector<ConfigField>& ConfigSchema();

// Loads `path` over the defaults, then applies overrides in order, then
// validates. An empty path means defaults plus overrides.
Config LoadConfig(const std::string& path, const std::vector<std::string>& overrides = {});

// Applies one "section.key=value" override; value is parsed as YAML.
void ApplyOverride(Config& config, const std::string& assignment);

// The resolved config as YAML, every key shown (what `dfar config show` prints
// and what a run dir keeps).
std::string ConfigToYaml(const Config& config);

// A table of keys with type, default and doc, for --help and `dfar config keys`.
std::string ConfigKeysHelp();

}  // namespace dfar
