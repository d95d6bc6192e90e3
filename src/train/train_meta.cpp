#include "train_meta.h"

#include "dfar/core/error.h"

namespace dfar {
namespace {

using nlohmann::json;

template <typename T>
T Get(const json& j, const char* key, const T& fallback, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) return fallback;
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    DFAR_THROW(where, ": checkpoint meta key '", key, "' has the wrong type (", j.at(key).type_name(), ")");
  }
}

}  // namespace

json TrainMeta::ToJson() const {
  return {{"config_yaml", config_yaml},
          {"model_identity", model_identity},
          {"cursor", {{"epoch", cursor_epoch}, {"step", cursor_step}}},
          {"world_size", world_size},
          {"global_batch", global_batch},
          {"optimizer_steps", optimizer_steps},
          {"skipped_steps", skipped_steps},
          {"scheduler",
           {{"kind", schedule_kind}, {"total_steps", schedule_total_steps}, {"warmup_steps", schedule_warmup_steps}}},
          {"placement", {{"device", device}, {"dtype", dtype}, {"dtype_reason", dtype_reason}}}};
}

TrainMeta TrainMeta::FromJson(const json& meta, const std::string& where) {
  DFAR_CHECK(meta.is_object(), where, ": checkpoint meta is not an object");
  TrainMeta m;
  m.config_yaml = Get<std::string>(meta, "config_yaml", "", where);
  m.model_identity = Get<std::string>(meta, "model_identity", "", where);
  const json cursor = Get<json>(meta, "cursor", json::object(), where);
  m.cursor_epoch = Get<int64_t>(cursor, "epoch", 0, where);
  m.cursor_step = Get<int64_t>(cursor, "step", 0, where);
  m.world_size = Get<int64_t>(meta, "world_size", 0, where);
  m.global_batch = Get<int64_t>(meta, "global_batch", 0, where);
  m.optimizer_steps = Get<int64_t>(meta, "optimizer_steps", 0, where);
  m.skipped_steps = Get<int64_t>(meta, "skipped_steps", 0, where);
  const json sched = Get<json>(meta, "scheduler", json::object(), where);
  m.schedule_kind = Get<std::string>(sched, "kind", "", where);
  m.schedule_total_steps = Get<int64_t>(sched, "total_steps", 0, where);
  m.schedule_warmup_steps = Get<int64_t>(sched, "warmup_steps", 0, where);
  const json placement = Get<json>(meta, "placement", json::object(), where);
  m.device = Get<std::string>(placement, "device", "", where);
  m.dtype = Get<std::string>(placement, "dtype", "", where);
  m.dtype_reason = Get<std::string>(placement, "dtype_reason", "", where);
  return m;
}

}  // namespace dfar
