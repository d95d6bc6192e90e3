// `dfar tokenizer train|encode`.
#include <cstdio>
#include <memory>

#include "commands.h"
#include "dfar/core/error.h"
#include "dfar/data/dataset.h"
#include "dfar/data/tokenizer.h"

namespace dfar::cli {
namespace {

struct TokenizerFlags {
  ConfigFlags config;
  std::string data;
  int vocab = 2000;
  std::string out;
  std::string model;
  std::string text;
};

void RunTrain(const TokenizerFlags& f) {
  const Config config = LoadConfigFromFlags(f.config);
  const auto examples = LoadExamples(f.data.empty() ? config.data.train : f.data, config.data);
  std::vector<std::string> texts;
  texts.reserve(examples.size() * 2);
  for (const auto& ex : examples) {
    texts.push_back(ex.statement);
    if (!ex.reason.empty()) texts.push_back(ex.reason);
  }
  const std::string path = TrainSentencePieceTokenizer(texts, f.vocab, f.out, config.run.seed);
  std::printf("wrote %s (%d pieces, trained on %zu texts)\n", path.c_str(), f.vocab, texts.size());
}

void RunEncode(const TokenizerFlags& f) {
  const auto tok = LoadSentencePieceTokenizer(f.model);
  const auto ids = tok->Encode(f.text);
  for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
  std::printf("\n");
}

}  // namespace

void RegisterTokenizerCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenizer", "train or apply a SentencePiece tokenizer");
  cmd->require_subcommand(1);
  auto flags = std::make_shared<TokenizerFlags>();

  auto* train = cmd->add_subcommand("train", "train a SentencePiece model on DFAR statements and reasons");
  train->add_option("--data,-d", flags->data, "CSV file (default: data.train from the config)");
  train->add_option("--vocab", flags->vocab, "vocabulary size")->check(CLI::Range(64, 1 << 20));
  train->add_option("--out,-o", flags->out, "output directory (gets tokenizer.model)")->required();
  AddConfigFlags(*train, flags->config);
  train->callback([flags] { RunTrain(*flags); });

  auto* encode = cmd->add_subcommand("encode", "print the ids of a text");
  encode->add_option("--model,-m", flags->model, "tokenizer.model")->required();
  encode->add_option("text", flags->text, "text to encode")->required();
  encode->callback([flags] { RunEncode(*flags); });
}

}  // namespace dfar::cli
