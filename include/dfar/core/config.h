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
  std::string dir = "runs/default";       // Where logs, metrics and checkpoints go.
  uint64_t seed = 1234;                   // Seeds shuffles, splits, dropout, init.
  std::string log_level = "info";         // trace|debug|info|warn|error; env DFAR_LOG_LEVEL wins.
  bool log_all_ranks_to_console = false;  // True helps debugging; noisy at scale.
};

// Which columns of a CSV hold the text, label and reason, and how a label
// cell maps to 0 (ethical) / 1 (unethical). Defaults read DFAR itself.
struct DataConfig {
  std::string train = "../shared/data/dfar/DFAR_trainset.csv";
  std::string test = "../shared/data/dfar/DFAR_testset.csv";
  std::string delimiter = ",";  // One character; ETHOS uses ';'.
  std::string text_column = "Statement";
  std::string label_column = "Label";
  std::string reason_column = "Reason";  // Empty: the dataset has no reasons.
  std::string label_rule = "map";        // map: exact values; threshold: number >= t is unethical.
  std::vector<std::string> ethical_values = {"0"};
  std::vector<std::string> unethical_values = {"1"};
  double label_threshold = 0.5;  // Used by label_rule=threshold.
  double val_fraction = 0.1;     // Held out of train for eval loss; 0 disables.
  int64_t limit = 0;             // Use only N rows (0 = all); for smoke runs and demos.
  std::string subset = "head";   // Which N rows: head = the first N; stride = N spread evenly over the file.
};

// How an example becomes a token sequence.
struct PromptConfig {
  std::string objective = "lr";          // l: label only; lr: label then reason (the paper's L+R).
  std::string template_name = "llama2";  // A template from templates_file.
  std::string templates_file = "configs/templates.yaml";
  int64_t max_seq_len = 512;  // Longer examples are truncated from the reason's end.
  bool pack = false;          // Pack several examples per sequence (segment ids keep them apart).
};

struct TokenizerConfig {
  std::string path;  // SentencePiece .model, or empty to take the model's own.
};

// How the sampler deals out examples to ranks and batches.
struct SamplerConfig {
  int64_t micro_batch = 4;         // Examples per rank per micro-step.
  std::string remainder = "drop";  // drop|wrap: how train shards are made equal.
  bool group_by_length = true;     // Batches of similar length waste less padding.
  int64_t group_window = 64;       // Examples sorted together when grouping; bigger = less padding, less randomness.
};

// Optimisation. Defaults are the paper's: AdamW, lr 2e-4 constant after a
// 3% warmup, weight decay 0.001, clipping at global norm 0.3.
struct TrainConfig {
  // adamw: the paper's. sgd: p -= lr * (g + wd * p), no momentum; its update
  // is linear in the gradients, so rounding differences pass through
  // unamplified (the equivalence tests use it). Its moments stay allocated
  // (zeros) so that checkpoints keep one layout.
  std::string optimizer = "adamw";
  double lr = 2e-4;
  std::string schedule = "constant";  // constant|linear|cosine, all after warmup.
  double warmup_ratio = 0.03;         // Fraction of total steps spent warming up.
  double weight_decay = 0.001;        // Decoupled (AdamW); not applied to norms.
  double grad_clip = 0.3;             // Global L2 norm across ranks; 0 disables.
  int64_t epochs = 1;
  int64_t max_steps = 0;              // >0 caps optimizer steps (overrides epochs).
  int64_t grad_accum = 1;             // Micro-batches per optimizer step per rank.
  int64_t eval_every = 0;             // Validation loss every K steps (0: never).
  int64_t log_every = 1;              // Progress line every K steps.
  int64_t max_consecutive_skips = 5;  // Abort after K steps in a row with a non-finite loss or norm.
};

// Which model and how it computes.
struct ModelSection {
  std::string path = ".cache/models/smollm2-135m-instruct.gguf";  // .gguf file or HF directory.
  // pretrained: weights from path. random: only the config and tokenizer from
  // path, weights drawn from run.seed (sizing and GPU checks without weights).
  std::string init = "pretrained";
  std::string device = "auto";  // auto|cpu|cuda: auto takes this rank's GPU if one exists.
  std::string dtype =
      "auto";  // auto|fp32|bf16: auto = bf16 on CUDA; on CPU bf16 only where a probe GEMM shows it faster.
  std::string attention = "sdpa";         // sdpa (fused where libtorch has it) | math (reference).
  bool activation_checkpointing = false;  // Recompute blocks in backward: less memory, ~1/3 more compute.
  // TF32 tensor cores for fp32 matmuls on CUDA. Off by default: fp32 then
  // means fp32 (TF32 keeps 10 mantissa bits), as in PyTorch since 1.12; bf16
  // compute, the CUDA default, is not affected.
  bool allow_tf32 = false;
  // none | nf4: QLoRA, the frozen base's block projections stored as 4-bit
  // NormalFloat and dequantised per matmul (model/nf4_linear.h). Needs LoRA.
  std::string quant = "none";
};

// LoRA adapters. The paper: r=64, alpha=16, dropout 0.1 on all projections.
struct LoraConfig {
  bool enabled = true;
  int64_t rank = 64;
  double alpha = 16.0;
  double dropout = 0.1;
  std::vector<std::string> targets = {"q", "k", "v", "o", "gate", "up", "down"};
};

// Data parallelism.
struct DistConfig {
  // 0: replicated optimizer; 1: shard optimizer state; 2: also reduce-scatter
  // the gradients (each rank keeps its reduced part; the gradient buffers are
  // still full-size on every rank, so gradient memory is not yet saved).
  int64_t zero = 0;
  double bucket_mb = 32.0;            // Gradient bucket size; see docs/benchmarks.md for how it was chosen.
  double collective_timeout_s = 600;  // A collective slower than this aborts the job, naming missing ranks.
  // Dtype that bf16 gradients are accumulated (over micro-steps) and reduced
  // (over ranks) in. fp32, the default, as torchtitan's FSDP2 policy and
  // Megatron do: a bf16 sum keeps 8 bits, so 1 + 2^-9 is 1. Costs 4 bytes
  // per trainable parameter. param: in the parameters' dtype (DDP's way),
  // to save that memory.
  std::string reduce_dtype = "fp32";
};

struct CheckpointConfig {
  int64_t every = 0;      // Save every K optimizer steps (0: only at the end).
  int64_t keep_last = 2;  // Newest complete checkpoints kept (0: all).
  bool async = false;     // Write in the background while training continues.
};

struct EvalConfig {
  std::string mode = "generate";  // generate: greedy decoding + verdict parsing; likelihood: compare label log-probs.
  int64_t limit = 0;              // Evaluate N test examples (0: all).
  std::string subset = "head";    // Which N: head = the first N; stride = N spread evenly over the file.
  int64_t batch_size = 8;         // Prompts decoded together per rank.
  int64_t max_new_tokens = 96;    // Generation budget (L+R reasons need room).
  std::string out_dir;            // Reports go here (default: <run.dir>/eval).
  // Reason judging (generate mode, data with human reasons): a sentence
  // encoder reads every generated reason. Empty turns it off (smoke tests);
  // the report then says the reason metrics that need it were not computed.
  std::string encoder = ".cache/models/all-minilm-l6-v2";
  // Automatic misalignment: a reason is misaligned when the majority label of
  // its mar_k nearest human reasons (cosine, in mar_bank) differs from the
  // gold label. mar_bank defaults to data.train; its embeddings are cached.
  int64_t mar_k = 15;
  std::string mar_bank;
  int64_t mar_bank_limit = 0;  // Keep N bank reasons spread evenly over the file (0 = all); smaller is faster to embed.
  int64_t bootstrap_resamples = 1000;  // For macro F1 and mean similarity intervals (seeded by run.seed).
};

struct Config {
  RunConfig run;
  ModelSection model;
  LoraConfig lora;
  DistConfig dist;
  CheckpointConfig ckpt;
  EvalConfig eval;
  DataConfig data;
  PromptConfig prompt;
  TokenizerConfig tokenizer;
  SamplerConfig sampler;
  TrainConfig train;

  // Cross-field rules (e.g. threshold rule needs no value lists). Throws.
  void Validate() const;
};

// One documented key of the schema.
struct ConfigField {
  std::string key;   // "train.lr"
  std::string type;  // "float", "int", "bool", "string", "list", "enum(a|b)"
  std::string doc;   // One line.
  std::function<void(Config&, const YAML::Node&, const std::string& where)> parse;
  std::function<std::string(const Config&)> show;  // YAML flow text of the value.
};

// Every key, in display order.
const std::vector<ConfigField>& ConfigSchema();

// Loads `path` over the defaults, then applies overrides in order, then
// validates. An empty path means defaults plus overrides.
Config LoadConfig(const std::string& path, const std::vector<std::string>& overrides = {});

// Parses YAML text (e.g. a config stored in a checkpoint); `source` names it
// in messages.
Config LoadConfigText(const std::string& yaml, const std::string& source);

// Applies one "section.key=value" override; value is parsed as YAML.
void ApplyOverride(Config& config, const std::string& assignment);

// The resolved config as YAML, every key shown (what `dfar config show` prints
// and what a run dir keeps).
std::string ConfigToYaml(const Config& config);

// A table of keys with type, default and doc, for --help and `dfar config keys`.
std::string ConfigKeysHelp();

}  // namespace dfar
