// Mapping between the trainer's flat state and checkpoint tensors (internal).
//
// Checkpoint tensor names are layout-independent, so a checkpoint written by
// N ranks with any bucket size loads on M ranks:
//   param/<dfar name>            trainable parameter values (fp32)
//   optim.exp_avg/<dfar name>    AdamW first moment
//   optim.exp_avg_sq/<dfar name> AdamW second moment
// With ZeRO 1-3 each rank writes the slices it owns; with ZeRO 0 each
// parameter (and its state) is written by one rank, spread by size.
#pragma once

#include <nlohmann/json.hpp>

#include <vector>

#include "dfar/ckpt/checkpoint.h"
#include "dfar/train/flat_params.h"
#include "dfar/train/optimizer.h"

namespace dfar {

// This rank's chunks of parameters and optimizer state.
std::vector<ChunkToWrite> CollectStateChunks(FlatParameters& flat, AdamW& optim, int zero, int rank, int world);

// Loads parameters (all of them, into flat.data()) and this rank's owned
// optimizer state from `reader`. Throws naming the tensor on any mismatch.
void RestoreState(const CheckpointReader& reader, FlatParameters& flat, AdamW& optim);

// The RNG streams dropout draws from, as JSON (and back): the CPU
// generator's state (a byte array, as before CUDA runs existed) and, on a
// CUDA device, {"cpu": ..., "cuda": ...} with that device's generator too.
nlohmann::json CaptureRngState(const torch::Device& device);
void RestoreRngState(const nlohmann::json& state, const torch::Device& device);

}  // namespace dfar
