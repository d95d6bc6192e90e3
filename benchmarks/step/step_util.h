// Building blocks of bench_step: the deterministic batch shared with the
// Python baselines (benchmarks/py), the tiny random Llama, a model set up for
// training exactly as dfar's Trainer sets it up, one trainer step, and the
// model-FLOPs count used to turn step times into GFLOP/s.
//
// Why a separate file: bench_step.cpp keeps only the case table, timing and
// reporting; everything here mirrors library code paths (src/train/trainer.cpp)
// and is easier to check against them on its own.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "dfar/comm/communicator.h"
#include "dfar/data/collate.h"
#include "dfar/model/pretrained.h"
#include "dfar/runtime/run_setup.h"
#include "dfar/train/loss.h"
#include "dfar/train/step_engine.h"

namespace dfar::bench {

// This rank's B x T rows: ids[b][t] = (17 + 1009 g + 31 t + 7 ((g t) mod 13))
// mod vocab with g = rank * B + b; label[b][t] = ids[b][t + 1] for
// T/2 <= t < T - 1, else ignored (-100).
struct StepBatch {
  BatchTensors tensors;
  double supervised = 0;  // Supervised positions on this rank.
};
StepBatch MakeStepBatch(int rank, int64_t rows, int64_t cols, int64_t vocab);

// Real DFAR rows: the training examples of the demo's L+R config
// (configs/demo-lr.yaml: its data file, template, objective and
// max_seq_len), tokenised with `tok`, in file order; rank r takes the r-th
// run of as many examples as greedy packing (CollatePacked, dfar's
// data.packing) fits into `rows` x `cols`. `examples` are those examples, so
// the Python side can batch the very same ones its own way; `real_tokens`
// counts their tokens (the packed batch's non-padding slots).
struct DfarBatch {
  StepBatch batch;
  std::vector<TokenizedExample> examples;
  int64_t real_tokens = 0;
};
DfarBatch MakeDfarBatch(const Tokenizer& tok, int rank, int64_t rows, int64_t cols);
// {"examples": [{"index", "ids", "prompt_len"}, ...]} for benchmarks/py.
void WriteExamples(const std::vector<TokenizedExample>& examples, const std::string& path);

// hidden 64, 2 layers, 4 heads (2 kv), intermediate 176, vocab 512, untied;
// weights N(0, 0.02) after torch::manual_seed(1234), norms 1. No tokenizer.
ModelConfig TinyLlamaConfig();
PretrainedModel MakeTinyLlama();

// Removes `dir` if present and exports `model` there (HF layout).
void ExportFresh(PretrainedModel& model, const std::string& dir);

struct TrainSetup {
  bool lora = false;  // r 64, alpha 16, dropout 0 on q,k,v,o,gate,up,down.
  torch::ScalarType dtype = torch::kFloat;
  double bucket_mb = 32;
  std::string device = "cpu";  // model.device: cpu, or cuda (this rank's GPU).
};

// A model wired for training the way Trainer::BuildModel/BuildOptimizer do it:
// LoRA (seeded) before the dtype cast, then the library's StepEngine (ZeRO 0,
// AdamW betas 0.9/0.999, eps 1e-8, no decay; fp32 master weights for bf16).
class Trainee {
 public:
  Trainee(PretrainedModel model, const TrainSetup& setup, Communicator& comm);
  // One optimizer step as Trainer::TrainStep + Trainer::Run do it: global
  // supervised count, StepEngine::ForwardBackward, StepEngine::Update with
  // clip 1.0. Returns the global mean loss of the step (before its update).
  // On CUDA the step ends with a device synchronisation, so that a timer
  // around it sees the optimizer's kernels too.
  double Step(const StepBatch& batch, double lr);
  // The batch on this trainee's device (done once, before timing).
  StepBatch OnDevice(const StepBatch& batch) const;
  const torch::Device& device() const { return run_->device(); }
  Decoder& decoder() { return model_.decoder; }
  int64_t trainable() const { return engine_->trainable(); }

 private:
  Communicator& comm_;
  std::unique_ptr<RunSetup> run_;  // The trainer's run setup: device, dtype, tensor communicator.
  PretrainedModel model_;
  std::unique_ptr<StepEngine> engine_;
};

}  // namespace dfar::bench
