// Why the step is shaped this way: the loss of a micro-batch is divided by
// the supervised-token count of the whole optimizer step across all ranks,
// and gradients are summed (not averaged) across ranks. Only then do N ranks
// x batch B x k micro-steps give the parameters of 1 rank x batch N*B*k.
#include "dfar/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "dfar/ckpt/checkpoint.h"
#include "dfar/comm/watchdog.h"
#include "dfar/core/error.h"
#include "dfar/core/faults.h"
#include "dfar/core/file_util.h"
#include "dfar/core/logging.h"
#include "dfar/core/torch_compat.h"
#include "dfar/data/collate.h"
#include "dfar/data/dataset.h"
#include "dfar/data/prompt_template.h"
#include "dfar/data/sampler.h"
#if defined(DFAR_WITH_NCCL)
#include "dfar/comm/nccl_communicator.h"
#endif
#include "dfar/model/pretrained.h"
#include "dfar/runtime/run_setup.h"
#include "dfar/train/loss.h"
#include "dfar/train/schedule.h"
#include "dfar/train/step_engine.h"
#include "dfar/train/trained_model.h"
#include "run_dir.h"
#include "train_data.h"
#include "train_meta.h"
#include "train_state.h"

namespace dfar {
namespace {

void KeepMetricsUpTo(const std::string& path, int64_t step);

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

class Trainer {
 public:
  Trainer(const Config& config, const TrainOptions& options, RunSetup& setup);
  TrainSummary Run();

 private:
  void BuildModel();
  void BuildOptimizer();
  void TrainStep(int64_t step, double* tokens);
  double ValidationLoss();
  void LogStep(int64_t step, double loss, double lr, double norm, double tokens, double samples, double secs,
               bool skipped);
  std::string SaveCheckpoint(int64_t step);
  void Restore(const std::string& dir);
  int64_t TotalSteps() const;
  BatchGeometry Geometry() const {
    return {static_cast<int64_t>(comm_.size()), config_.sampler.micro_batch, config_.train.grad_accum};
  }
  bool StopRequested();
  void AddDeviceMetrics(nlohmann::json& j, double secs);

  Config config_;
  TrainOptions options_;
  RunSetup& setup_;
  Communicator& comm_;
  torch::Device device_{torch::kCPU};
  double step_flops_ = 0;                    // Model FLOPs of the last step on this rank, for MFU (CUDA only).
  std::unique_ptr<TrainFlopCounter> flops_;  // Set on CUDA only.
  PretrainedModel model_;
  TrainingData data_;
  std::unique_ptr<ShardedSampler> sampler_;
  std::unique_ptr<StepEngine> engine_;
  std::unique_ptr<CheckpointWriter> writer_;
  LrSchedule schedule_;
  std::ofstream metrics_;
  std::string model_identity_;  // Of the base model, computed once per run.
  int64_t start_step_ = 0;
  int64_t skipped_total_ = 0;
  int64_t consecutive_skips_ = 0;
  double last_loss_ = 0;
};

Trainer::Trainer(const Config& config, const TrainOptions& options, RunSetup& setup)
    : config_(config), options_(options), setup_(setup), comm_(setup.host()), device_(setup.device()) {
  // Same seed on every rank while the model is built (LoRA init), then a
  // per-rank stream for dropout.
  torch::manual_seed(config_.run.seed);
  BuildModel();
  model_identity_ = BaseModelIdentity(config_.model, config_.run.seed);
  data_ = TokenizeTrainingData(config_, *model_.tokenizer);
  std::vector<int64_t> lengths;
  for (const auto& t : data_.train) lengths.push_back(static_cast<int64_t>(t.ids.size()));
  sampler_ = std::make_unique<ShardedSampler>(lengths, comm_.rank(), comm_.size(), config_.sampler, config_.run.seed,
                                              config_.train.grad_accum);
  BuildOptimizer();
  torch::manual_seed(config_.run.seed + 1000003ull * static_cast<uint64_t>(comm_.rank() + 1));
  SaveOptions save;
  save.keep_last = static_cast<int>(config_.ckpt.keep_last);
  save.async = config_.ckpt.async;
  writer_ = std::make_unique<CheckpointWriter>((fs::path(config_.run.dir) / "checkpoints").string(), comm_, save);
  if (options_.resume) {
    const std::string latest = FindLatestCheckpoint((fs::path(config_.run.dir) / "checkpoints").string());
    DFAR_CHECK(!latest.empty(), "--resume: no complete checkpoint under ", config_.run.dir, "/checkpoints");
    Restore(latest);
  }
  const std::string metrics = (fs::path(config_.run.dir) / "metrics.jsonl").string();
  if (comm_.rank() == 0 && options_.resume) KeepMetricsUpTo(metrics, start_step_);
  if (comm_.rank() == 0) metrics_.open(metrics, options_.resume ? std::ios::app : std::ios::trunc);
}

void Trainer::BuildModel() {
  // Parameters are created on the device in the compute dtype and the
  // weights copied in tensor by tensor: no full fp32 model on the host.
  model_ = LoadBaseModel(config_.model, config_.run.seed,
                         {torch::TensorOptions().device(device_).dtype(setup_.dtype()), false});
  DFAR_CHECK(model_.tokenizer != nullptr, config_.model.path, ": the model carries no tokenizer");
  auto& d = model_.decoder;
  if (config_.lora.enabled) {
    d->EnableLora(config_.lora.targets, config_.lora.rank, config_.lora.alpha, config_.lora.dropout);
  }
  d->set_activation_checkpointing(config_.model.activation_checkpointing);
  d->set_attention_kernel(config_.model.attention == "math" ? AttentionKernel::kMath : AttentionKernel::kSdpa);
  d->to(device_, setup_.dtype());
  if (config_.model.quant == "nf4") {
    const auto q = d->QuantizeBaseNf4();
    LogInfo(
        "NF4 base: {} projection weights, {} parameters in {:.1f} MB ({:.3f} bits per parameter, constants "
        "included), {:.1f} MB before",
        q.weights, q.params, q.bytes / 1e6, 8.0 * static_cast<double>(q.bytes) / static_cast<double>(q.params),
        q.dense_bytes / 1e6);
  }
  d->train();
}

void Trainer::BuildOptimizer() {
  StepEngineOptions o;
  o.zero = static_cast<int>(config_.dist.zero);
  o.bucket_mb = config_.dist.bucket_mb;
  o.adamw.weight_decay = config_.train.weight_decay;
  o.adamw.sgd = config_.train.optimizer == "sgd";
  o.reduce_fp32 = config_.dist.reduce_dtype == "fp32";
  engine_ = std::make_unique<StepEngine>(model_.decoder, setup_.tensors(), o);
  if (device_.is_cuda()) flops_ = std::make_unique<TrainFlopCounter>(model_.decoder);
  schedule_ = MakeSchedule(config_.train.schedule, config_.train.lr, TotalSteps(), config_.train.warmup_ratio);
  LogInfo("trainable parameters: {} in {} buckets; optimizer state {:.1f} MB on this rank (ZeRO {})",
          engine_->trainable(), engine_->flat().buckets().size(), engine_->optimizer().state_bytes() / 1e6,
          config_.dist.zero);
}

// MFU and device memory, for metrics.jsonl on CUDA.
void Trainer::AddDeviceMetrics(nlohmann::json& j, double secs) {
  j["peak_memory_gb"] = nullptr;
  j["mfu"] = nullptr;
#if defined(DFAR_WITH_NCCL)
  const int device = device_.index();
  // The caching allocator's peak of bytes handed to tensors since the start.
  const int64_t allocator_peak = compat::CudaAllocatorPeakBytes(device);
  if (allocator_peak >= 0) j["peak_memory_gb"] = static_cast<double>(allocator_peak) / 1e9;
  static const CudaDeviceInfo info = GetCudaDeviceInfo(device);
  // Rank 0's own model FLOPs over its own peak; ranks get equal shares of a step.
  if (info.peak_bf16_flops > 0) j["mfu"] = step_flops_ / secs / info.peak_bf16_flops;
#else
  (void)secs;
#endif
}

int64_t Trainer::TotalSteps() const {
  if (config_.train.max_steps > 0) return config_.train.max_steps;
  return sampler_->batches_per_epoch() * config_.train.epochs;
}

// A run killed after its last checkpoint logged steps that the resume
// trains again: drop them, so that every step appears once. Lines that are
// not JSON objects with a step are kept (they are not the trainer's).
void KeepMetricsUpTo(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  int64_t dropped = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() > step) {
      ++dropped;
      continue;
    }
    kept += line + "\n";
  }
  in.close();
  if (dropped == 0) return;
  WriteFileAtomic(path, kept);
  LogInfo("{}: dropped {} line(s) past step {} (logged after the checkpoint, trained again now)", path, dropped, step);
}

// Splits this rank's share of one global batch into grad_accum micro-batches.
std::vector<std::vector<int64_t>> SplitMicroBatches(const std::vector<int64_t>& rows, int64_t parts) {
  std::vector<std::vector<int64_t>> out;
  const int64_t n = static_cast<int64_t>(rows.size()), per = (n + parts - 1) / parts;
  for (int64_t i = 0; i < n; i += per) out.emplace_back(rows.begin() + i, rows.begin() + std::min(n, i + per));
  return out;
}

void Trainer::TrainStep(int64_t step, double* tokens) {
  // 1. This step's micro-batches and their global supervised-token count.
  // The sampler deals global batches of world x micro_batch x grad_accum
  // examples, so accumulation and world size never change which examples
  // make up an optimizer step.
  std::vector<BatchTensors> micro;
  step_flops_ = 0;
  double counts[2] = {0, 0};  // Supervised tokens, real tokens (this rank).
  for (const auto& ids : SplitMicroBatches(sampler_->Next(), config_.train.grad_accum)) {
    std::vector<TokenizedExample> rows;
    for (int64_t i : ids) rows.push_back(data_.train[static_cast<size_t>(i)]);
    const Batch b = config_.prompt.pack ? CollatePacked(rows, model_.tokenizer->pad_id(), config_.prompt.max_seq_len)
                                        : CollatePadded(rows, model_.tokenizer->pad_id());
    counts[0] += static_cast<double>(b.supervised_tokens);
    counts[1] += static_cast<double>(b.real_tokens);
    micro.push_back(ToTensors(b, config_.prompt.pack, device_));
    if (flops_)
      step_flops_ += static_cast<double>(b.real_tokens) *
                     flops_->PerToken(micro.back().input_ids.size(1), config_.model.activation_checkpointing);
  }
  comm_.AllReduce(counts, 2, DType::kFloat64, ReduceOp::kSum);
  DFAR_CHECK(counts[0] > 0, "step ", step, " has no supervised tokens on any rank");
  *tokens = counts[1];
  // 2. Forward/backward; the last micro-step's backward overlaps the collectives.
  engine_->ForwardBackward(micro, counts[0], CurrentFaults().PoisonStep(step));
  if (options_.observe_gradients) options_.observe_gradients(step, engine_->FullGradients());
}

double Trainer::ValidationLoss() {
  if (data_.val.empty()) return std::nan("");
  torch::NoGradGuard no_grad;
  model_.decoder->eval();
  // Ranks run different numbers of batches here: ZeRO 3 holds every
  // parameter for the pass instead of gathering per block.
  engine_->GatherAllParameters();
  const Range r = EvalShard(static_cast<int64_t>(data_.val.size()), comm_.rank(), comm_.size());
  double sums[2] = {0, 0};
  auto ce_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));  // Stays on the device.
  for (int64_t i = r.begin; i < r.end; i += config_.sampler.micro_batch) {
    std::vector<TokenizedExample> rows;
    for (int64_t j = i; j < std::min(r.end, i + config_.sampler.micro_batch); ++j)
      rows.push_back(data_.val[static_cast<size_t>(j)]);
    const Batch b = CollatePadded(rows, model_.tokenizer->pad_id());
    ce_sum += SupervisedCrossEntropySum(model_.decoder, ToTensors(b, false, device_)).to(torch::kDouble);
    sums[1] += static_cast<double>(b.supervised_tokens);
  }
  sums[0] = ce_sum.item<double>();  // One synchronisation for the whole pass.
  engine_->ReleaseAllParameters();
  comm_.AllReduce(sums, 2, DType::kFloat64, ReduceOp::kSum);
  model_.decoder->train();
  return sums[0] / std::max(1.0, sums[1]);
}

void Trainer::LogStep(int64_t step, double loss, double lr, double norm, double tokens, double samples, double secs,
                      bool skipped) {
  if (comm_.rank() != 0) return;
  nlohmann::json j = {{"step", step + 1},
                      {"loss", loss},
                      {"lr", lr},
                      {"grad_norm", norm},
                      {"tokens_per_s", tokens / secs},
                      {"samples_per_s", samples / secs},
                      {"skipped_steps", skipped_total_}};
  if (device_.is_cuda()) AddDeviceMetrics(j, secs);
  metrics_ << j.dump() << "\n";
  metrics_.flush();
  const int64_t total = schedule_.total_steps;
  if ((step + 1) % config_.train.log_every == 0 || step + 1 == total) {
    const double eta = secs * static_cast<double>(total - step - 1);
    LogInfo("step {}/{} loss {:.4f} lr {:.3e} grad_norm {:.3f} tok/s {:.0f} eta {:.0f}s{}", step + 1, total, loss, lr,
            norm, tokens / secs, eta, skipped ? " (skipped: non-finite)" : "");
  }
}

bool Trainer::StopRequested() {
  int32_t stop = StopSignalSeen() != 0 ? 1 : 0;
  comm_.AllReduce(&stop, 1, DType::kInt32, ReduceOp::kMax);
  return stop != 0;
}

std::string Trainer::SaveCheckpoint(int64_t step) {
  SaveRequest req;
  req.step = step;
  TrainMeta meta;
  meta.config_yaml = ConfigToYaml(config_);
  meta.model_identity = model_identity_;
  meta.cursor_epoch = sampler_->cursor().epoch;
  meta.cursor_step = sampler_->cursor().step;
  meta.world_size = comm_.size();
  meta.global_batch = Geometry().global();
  meta.optimizer_steps = engine_->optimizer().steps();
  meta.skipped_steps = skipped_total_;
  meta.schedule_kind = schedule_.kind;
  meta.schedule_total_steps = schedule_.total_steps;
  meta.schedule_warmup_steps = schedule_.warmup_steps;
  meta.device = device_.str();
  meta.dtype = setup_.placement().dtype_name;
  meta.dtype_reason = setup_.placement().reason;
  req.meta = meta.ToJson();
  req.rank_meta = {{"rng", CaptureRngState(device_)}};
  req.chunks = CollectStateChunks(engine_->flat(), engine_->optimizer(), static_cast<int>(config_.dist.zero),
                                  comm_.rank(), comm_.size());
  const std::string dir = writer_->Save(std::move(req));
  LogInfo("checkpoint step {} -> {}", step, dir);
  return dir;
}

void Trainer::Restore(const std::string& dir) {
  const CheckpointReader reader = CheckpointReader::Open(dir);
  const TrainMeta meta = TrainMeta::FromJson(reader.meta(), dir);
  DFAR_CHECK(meta.model_identity == model_identity_, dir, ": the checkpoint was trained from another base model than ",
             config_.model.path);
  DFAR_CHECK(meta.global_batch == Geometry().global(), dir, ": resuming needs the same global batch (",
             meta.global_batch, " examples), this run has ", Geometry().Text());
  RestoreState(reader, engine_->flat(), engine_->optimizer());
  engine_->optimizer().set_steps(meta.optimizer_steps);
  skipped_total_ = meta.skipped_steps;
  SamplerCursor cursor;
  cursor.epoch = meta.cursor_epoch;
  cursor.step = meta.cursor_step;
  sampler_->Seek(cursor);
  if (reader.world_size() == comm_.size()) RestoreRngState(reader.index()["ranks"][comm_.rank()]["rng"], device_);
  start_step_ = reader.step();
  LogInfo("resumed from {} at step {}", dir, start_step_);
}

TrainSummary Trainer::Run() {
  TrainSummary summary;
  const auto t0 = Clock::now();
  const int64_t total = schedule_.total_steps;
  for (int64_t step = start_step_; step < total; ++step) {
    const auto ts = Clock::now();
    double tokens = 0;
    TrainStep(step, &tokens);
    const double lr = schedule_.At(step);
    const StepResult r = engine_->Update(lr, config_.train.grad_clip);
    const double loss = r.loss;
    const double norm = r.grad_norm;
    const bool skip = r.skipped;
    if (!skip) {
      consecutive_skips_ = 0;
    } else {
      ++skipped_total_;
      DFAR_CHECK(++consecutive_skips_ < config_.train.max_consecutive_skips, consecutive_skips_,
                 " consecutive steps had a non-finite loss or gradient norm (train.max_consecutive_skips = ",
                 config_.train.max_consecutive_skips, "); stopping at step ", step + 1);
    }
    const double samples = static_cast<double>(Geometry().global());
    LogStep(step, loss, lr, norm, tokens, samples, Seconds(ts), skip);
    last_loss_ = loss;
    summary.steps = step + 1;
    summary.last_grad_norm = norm;
    if (config_.train.eval_every > 0 && (step + 1) % config_.train.eval_every == 0)
      LogInfo("validation loss at step {}: {:.4f}", step + 1, ValidationLoss());
    const bool stop = StopRequested();
    if ((config_.ckpt.every > 0 && (step + 1) % config_.ckpt.every == 0) || step + 1 == total || stop)
      summary.last_checkpoint = SaveCheckpoint(step + 1);
    if (stop) {
      LogWarn("stop signal received: checkpointed at step {} and exiting", step + 1);
      break;
    }
  }
  writer_->Wait();
  summary.final_loss = last_loss_;
  summary.skipped_steps = skipped_total_;
  summary.seconds = Seconds(t0);
  return summary;
}

}  // namespace

TrainSummary RunTraining(const Config& config, const TrainOptions& options, Communicator& comm) {
  PrepareRunDir(config.run.dir, options.resume, options.overwrite, comm);
  LogOptions log;
  log.rank = comm.rank();
  log.level = config.run.log_level;
  log.run_dir = config.run.dir;
  log.all_ranks_console = config.run.log_all_ranks_to_console;
  InitLogging(log);
  WatchdogOptions watchdog;
  watchdog.dir = config.run.dir;
  watchdog.timeout_s = config.dist.collective_timeout_s;
  if (options.watchdog) comm.EnableWatchdog(watchdog);
  RunSetup setup(config.model, comm, config.dist.collective_timeout_s);
  setup.LogTopology();
  if (comm.rank() == 0)
    WriteFileAtomic((fs::path(config.run.dir) / "config.yaml").string(),
                    ConfigToYaml(config) + setup.ResolvedComment());
  Trainer trainer(config, options, setup);
  return trainer.Run();
}

}  // namespace dfar
