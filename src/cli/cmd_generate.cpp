// `dfar generate`: text from a pretrained model (GGUF or HF directory).
#include <cstdio>
#include <memory>

#include "commands.h"
#include "dfar/core/error.h"
#include "dfar/data/collate.h"
#include "dfar/model/generate.h"
#include "dfar/model/pretrained.h"
#include "dfar/runtime/run_setup.h"
#include "dfar/runtime/thread_policy.h"

namespace dfar::cli {
namespace {

struct GenerateFlags {
  std::string model;
  std::string prompt;
  bool chat = false;
  bool raw = false;
  ModelSection placement;  // model.device / model.dtype, as train and eval take them.
  GenerationOptions options;
};

void RunGenerate(const GenerateFlags& f) {
  // The same run setup as train and eval: one device and dtype rule; the
  // weights load straight onto that device in that dtype.
  ApplyWaitPolicy(f.placement);  // May re-execute dfar (runtime/thread_policy.h).
  auto comm = MakeSingleCommunicator();
  RunSetup setup(f.placement, *comm);
  if (setup.device().is_cpu()) std::fprintf(stderr, "dfar: threads wait: %s\n", WaitPolicyLine().c_str());
  PretrainedModel m =
      LoadPretrained(f.model, true, {torch::TensorOptions().device(setup.device()).dtype(setup.dtype()), false});
  DFAR_CHECK(m.tokenizer != nullptr, f.model, ": no tokenizer found (need tokenizer.json or tokenizer.model)");
  m.decoder->eval();
  // Instruct models whose vocabulary has ChatML markers (SmolLM2, Qwen) get
  // the prompt as a user turn, as chat front ends do; --raw sends it as is.
  const bool chatml = m.tokenizer->Encode("<|im_start|>").size() == 1;
  std::string text = f.prompt;
  if (f.chat || (chatml && !f.raw)) text = "<|im_start|>user\n" + f.prompt + "<|im_end|>\n<|im_start|>assistant\n";
  const std::vector<int32_t> ids = PromptIds(*m.tokenizer, text);
  const auto result = Generate(m.decoder, *m.tokenizer, {ids}, f.options);
  std::printf("%s\n", result[0].text.c_str());
  std::fflush(stdout);
}

}  // namespace

void RegisterGenerateCommand(CLI::App& app) {
  auto flags = std::make_shared<GenerateFlags>();
  auto* cmd = app.add_subcommand("generate", "generate text from a model with the KV cache");
  cmd->add_option("--model,-m", flags->model, "a .gguf file or a Hugging Face model directory")->required();
  cmd->add_option("--prompt,-p", flags->prompt, "prompt text")->required();
  cmd->add_flag("--chat", flags->chat,
                "wrap the prompt in a ChatML user turn (the default when the vocabulary has ChatML markers)");
  cmd->add_flag("--raw", flags->raw, "send the prompt as is, without the chat wrapper");
  cmd->add_option("--device", flags->placement.device, "auto, cpu or cuda (as model.device)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--dtype", flags->placement.dtype, "auto, fp32 or bf16 (as model.dtype)")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  cmd->add_option("--max-new-tokens,-n", flags->options.max_new_tokens, "tokens to generate")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--temperature", flags->options.temperature, "0 = greedy")->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-p", flags->options.top_p, "nucleus mass when sampling")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", flags->options.seed, "sampling seed");
  cmd->add_option("--decode-threads", flags->options.decode_threads,
                  "CPU threads of the decode steps; 0 = chosen by timing the first steps")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--stop", flags->options.stop_strings, "stop string (repeatable)");
  cmd->callback([flags] { RunGenerate(*flags); });
}

}  // namespace dfar::cli
