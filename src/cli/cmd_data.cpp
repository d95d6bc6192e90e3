// `dfar data stats` and `dfar data preview`.
#include <unistd.h>

#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "dfar/core/error.h"
#include "dfar/data/collate.h"
#include "dfar/data/dataset.h"
#include "dfar/data/prompt_template.h"
#include "dfar/data/tokenizer.h"

namespace dfar::cli {
namespace {

struct DataFlags {
  ConfigFlags config;
  std::string data;
  bool json = false;
  std::string objective;
  std::string template_name;
  std::string tokenizer;
  int64_t n = 1;
  int64_t offset = 0;
};

void PrintStats(const std::string& path, const DatasetStats& s, bool json) {
  if (json) {
    nlohmann::json j = {{"file", path},
                        {"rows", s.rows},
                        {"ethical", s.ethical},
                        {"unethical", s.unethical},
                        {"with_reason", s.with_reason},
                        {"non_ascii_rows", s.non_ascii},
                        {"mean_statement_chars", s.mean_statement_chars},
                        {"mean_reason_chars", s.mean_reason_chars},
                        {"max_reason_chars", s.max_reason_chars}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("file:                 %s\n", path.c_str());
  std::printf("rows:                 %lld\n", static_cast<long long>(s.rows));
  std::printf("ethical (label 0):    %lld\n", static_cast<long long>(s.ethical));
  std::printf("unethical (label 1):  %lld\n", static_cast<long long>(s.unethical));
  std::printf("rows with a reason:   %lld\n", static_cast<long long>(s.with_reason));
  std::printf("rows with non-ASCII:  %lld\n", static_cast<long long>(s.non_ascii));
  std::printf("mean statement chars: %.1f\n", s.mean_statement_chars);
  std::printf("mean reason chars:    %.1f (max %lld)\n", s.mean_reason_chars,
              static_cast<long long>(s.max_reason_chars));
}

void RunStats(const DataFlags& f) {
  const Config config = LoadConfigFromFlags(f.config);
  const std::string path = f.data.empty() ? config.data.train : f.data;
  const auto examples = LoadExamples(path, config.data);
  PrintStats(path, ComputeStats(examples), f.json);
}

// Markers around supervised text; bold green on a terminal as well.
struct Marks {
  std::string open, close;
};
Marks SupervisedMarks() {
  if (isatty(fileno(stdout))) return {"\033[1;32m\u27e6", "\u27e7\033[0m"};
  return {"\u27e6", "\u27e7"};
}

void PrintTokens(const Tokenizer& tok, const RenderedExample& r, const Example& ex, int64_t max_len) {
  const TokenizedExample t = Tokenize(tok, r, ex.index, max_len);
  const Batch b = CollatePadded({t}, tok.pad_id());
  std::printf("tokens: %zu total, %lld prompt, %lld supervised%s (tokenizer: %s, vocab %lld)\n", t.ids.size(),
              static_cast<long long>(t.prompt_len), static_cast<long long>(b.supervised_tokens),
              t.truncated ? ", target truncated" : "", tok.kind().c_str(), static_cast<long long>(tok.vocab_size()));
  const Marks m = SupervisedMarks();
  std::string line;
  for (size_t i = 0; i < t.ids.size(); ++i) {
    const bool supervised = static_cast<int64_t>(i) >= t.prompt_len;
    line += (supervised ? m.open : std::string("[")) + tok.Piece(t.ids[i]) + (supervised ? m.close : "]");
  }
  std::printf("%s\n", line.c_str());
}

void RunPreview(const DataFlags& f) {
  const Config config = LoadConfigFromFlags(f.config);
  const std::string path = f.data.empty() ? config.data.train : f.data;
  const auto examples = LoadExamples(path, config.data);
  const Objective objective = ParseObjective(f.objective.empty() ? config.prompt.objective : f.objective);
  const auto library = TemplateLibrary::Load(config.prompt.templates_file);
  const PromptTemplate& tmpl = library.Find(f.template_name.empty() ? config.prompt.template_name : f.template_name);
  std::unique_ptr<Tokenizer> tok;
  const std::string tok_path = f.tokenizer.empty() ? config.tokenizer.path : f.tokenizer;
  if (!tok_path.empty()) tok = LoadSentencePieceTokenizer(tok_path);
  const Marks m = SupervisedMarks();
  std::printf("# objective %s, template %s; supervised text is between %s and %s\n", ObjectiveName(objective),
              tmpl.name.c_str(), m.open.c_str(), m.close.c_str());
  for (int64_t i = f.offset; i < f.offset + f.n && i < static_cast<int64_t>(examples.size()); ++i) {
    const Example& ex = examples[static_cast<size_t>(i)];
    const RenderedExample r = Render(tmpl, ex, objective);
    std::printf("\n--- example %lld (%s line %lld, gold label %d = %s) ---\n", static_cast<long long>(ex.index),
                path.c_str(), static_cast<long long>(ex.line), ex.label, LabelWord(ex.label));
    std::printf("%s%s%s<eos>%s\n", r.prompt.c_str(), m.open.c_str(), r.target.c_str(), m.close.c_str());
    if (tok) PrintTokens(*tok, r, ex, config.prompt.max_seq_len);
  }
}

}  // namespace

void RegisterDataCommand(CLI::App& app) {
  auto* data = app.add_subcommand("data", "inspect a dataset: statistics and rendered training examples");
  data->require_subcommand(1);
  auto flags = std::make_shared<DataFlags>();

  auto* stats = data->add_subcommand("stats", "count rows and labels of a CSV (after the config's column mapping)");
  stats->add_option("--data,-d", flags->data, "CSV file (default: data.train from the config)");
  stats->add_flag("--json", flags->json, "print JSON");
  AddConfigFlags(*stats, flags->config);
  stats->callback([flags] { RunStats(*flags); });

  auto* preview = data->add_subcommand("preview", "render examples with the supervised part marked");
  preview->add_option("--data,-d", flags->data, "CSV file (default: data.train from the config)");
  preview->add_option("--objective", flags->objective, "l (label only) or lr (label + reason)")
      ->check(CLI::IsMember({"l", "lr"}));
  preview->add_option("--template", flags->template_name, "template name (default: prompt.template_name)");
  preview->add_option("--tokenizer", flags->tokenizer, "SentencePiece model: also show tokens and the loss mask");
  preview->add_option("--n", flags->n, "number of examples")->check(CLI::Range(int64_t{1}, int64_t{1000}));
  preview->add_option("--offset", flags->offset, "first example")->check(CLI::NonNegativeNumber);
  AddConfigFlags(*preview, flags->config);
  preview->callback([flags] { RunPreview(*flags); });
}

}  // namespace dfar::cli
