// The trainer's checkpoint metadata, as one struct that writes and reads
// itself (internal to src/train), so that no key is spelled twice.
// Readers: the trainer's resume, and LoadTrainedModel (config_yaml and
// model_identity). A missing key reads as its default; a key of the wrong
// type throws naming the checkpoint.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace dfar {

struct TrainMeta {
  std::string config_yaml;                    // The run's resolved config (ConfigToYaml).
  std::string model_identity;                 // ModelIdentity of the base model, computed once per run.
  int64_t cursor_epoch = 0, cursor_step = 0;  // The sampler's cursor.
  int64_t world_size = 0;
  int64_t global_batch = 0;  // BatchGeometry::global().
  int64_t optimizer_steps = 0;
  int64_t skipped_steps = 0;
  std::string schedule_kind;
  int64_t schedule_total_steps = 0, schedule_warmup_steps = 0;
  std::string device, dtype, dtype_reason;  // The run's placement.

  nlohmann::json ToJson() const;
  // `where` names the checkpoint in messages.
  static TrainMeta FromJson(const nlohmann::json& meta, const std::string& where);
};

}  // namespace dfar
