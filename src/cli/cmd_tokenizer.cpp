// `dfar tokenizer train|encode|export`.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "dfar/core/error.h"
#include "dfar/core/file_util.h"
#include "dfar/data/dataset.h"
#include "dfar/data/tokenizer.h"
#include "dfar/model/tokenizer_export.h"
#include "dfar/weights/gguf.h"

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

// The GGUF's tokenizer as tokenizer.json + tokenizer_config.json in --out:
// a model directory with a config.json beside them and model.init random
// then needs no weight file (scripts/gpu_bundle.sh).
void RunExport(const TokenizerFlags& f) {
  const GgufFile gguf = GgufFile::Open(f.model);
  std::filesystem::create_directories(f.out);
  const std::string json = (std::filesystem::path(f.out) / "tokenizer.json").string();
  WriteFileAtomic(json, GgufTokenizerToHfJson(gguf));
  WriteFileAtomic((std::filesystem::path(f.out) / "tokenizer_config.json").string(), GgufTokenizerConfigToHfJson(gguf));
  std::printf("wrote %s and tokenizer_config.json from %s\n", json.c_str(), f.model.c_str());
}

}  // namespace

void RegisterTokenizerCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenizer", "train or apply a SentencePiece tokenizer, or export a GGUF's");
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

  auto* exp = cmd->add_subcommand("export", "write a GGUF's tokenizer as Hugging Face tokenizer.json files");
  exp->add_option("--model,-m", flags->model, "a .gguf file")->required()->check(CLI::ExistingFile);
  exp->add_option("--out,-o", flags->out, "output directory (gets tokenizer.json, tokenizer_config.json)")->required();
  exp->callback([flags] { RunExport(*flags); });
}

}  // namespace dfar::cli
