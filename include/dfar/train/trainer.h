// `dfar train`: L or L+R fine-tuning, data-parallel over MPI ranks.
//
// Owns the loop (per optimizer step): take grad_accum micro-batches from this
// rank's sampler shard -> one all-reduce of the supervised-token count ->
// forward/backward of each micro-batch with loss = CE sum / global count (the
// last micro-step's backward overlaps bucketed gradient collectives) -> wait
// -> global-norm clip (a non-finite norm skips the step on every rank) ->
// AdamW on owned ranges -> ZeRO parameter gather -> metrics -> periodic
// validation loss and checkpoint.
// Failure: dfar::Error for bad config, data or model; a run dir that exists
// is refused unless resume or overwrite is set.
// Thread-safety: one Trainer per process, on the main thread.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "dfar/comm/communicator.h"
#include "dfar/core/config.h"

namespace dfar {

struct TrainOptions {
  bool resume = false;     // Continue from <run.dir>/checkpoints/latest.
  bool overwrite = false;  // Delete an existing run dir first.
  bool watchdog = true;    // Arm the collective watchdog (once per communicator; tests that train
                           // repeatedly on one communicator turn it off).
  // Called after each optimizer step's gradients are reduced across ranks,
  // before clipping, with every trainable tensor's gradient (fp32 copies, by
  // parameter name). Valid in full at ZeRO 0 and 1; at ZeRO 2 a rank holds
  // only its own shard. For diagnostics (gradient statistics) and the
  // equivalence tests; costs a copy of the gradients when set.
  std::function<void(int64_t step, const std::map<std::string, torch::Tensor>& grads)> observe_gradients;
};

struct TrainSummary {
  int64_t steps = 0;
  double final_loss = 0;
  double last_grad_norm = 0;  // Global, pre-clip; identical on every rank.
  int64_t skipped_steps = 0;  // Steps skipped for a non-finite loss or norm.
  double seconds = 0;
  std::string last_checkpoint;
};

// Runs training to completion (or until a stop signal, after checkpointing).
TrainSummary RunTraining(const Config& config, const TrainOptions& options, Communicator& comm);

}  // namespace dfar
