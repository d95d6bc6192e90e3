// Why the step is shaped this way: the loss of a micro-batch is divided by
// the supervised-token count of the whole optimizer step across all ranks,
// and gradients are summed (not averaged) across ranks. Only then do N ranks
// x batch B x k micro-steps give the parameters of 1 rank x batch N*B*k.
#include "dfar/train/trainer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dfar/ckpt/checkpoint.h"
#include "dfar/core/error.h"
#include "dfar/core/file_util.h"
#include "dfar/core/logging.h"
#include "dfar/core/torch_compat.h"
#include "dfar/core/world.h"
#include "dfar/data/collate.h"
#include "dfar/data/dataset.h"
#include "dfar/data/prompt_template.h"
#include "dfar/data/sampler.h"
#include "dfar/dist/watchdog.h"
#if defined(DFAR_WITH_NCCL)
#include "dfar/dist/nccl_communicator.h"
#endif
#include "dfar/model/pretrained.h"
#include "dfar/train/loss.h"
#include "dfar/train/schedule.h"
#include "dfar/train/step_engine.h"
#include "dfar/train/trained_model.h"
#include "run_dir.h"
#include "train_state.h"

namespace dfar {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::atomic<int> g_stop_signal{0};
extern "C" void OnStopSignal(int sig) {
  g_stop_signal.store(sig);
}

// Fault injection for tests: DFAR_FAULT_NONFINITE_STEPS="3,5" makes the loss of
// those (1-based) optimizer steps NaN on every rank, as a diverging run would.
bool InjectNonFinite(int64_t step) {
  static const std::vector<int64_t> steps = [] {
    std::vector<int64_t> v;
    const char* env = std::getenv("DFAR_FAULT_NONFINITE_STEPS");
    std::stringstream ss(env ? env : "");
    for (std::string item; std::getline(ss, item, ',');)
      if (!item.empty()) v.push_back(std::stoll(item));
    return v;
  }();
  return std::find(steps.begin(), steps.end(), step + 1) != steps.end();
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

struct Dataset {
  std::vector<TokenizedExample> train, val;
};

Dataset TokenizeData(const Config& c, const Tokenizer& tok) {
  auto examples = LoadExamples(c.data.train, c.data);
  auto split = HoldOutValidation(examples, c.data.val_fraction, c.run.seed);
  const auto library = TemplateLibrary::Load(c.prompt.templates_file);
  const PromptTemplate& tmpl = library.Find(c.prompt.template_name);
  const Objective objective = ParseObjective(c.prompt.objective);
  Dataset d;
  for (const auto& ex : split.train)
    d.train.push_back(Tokenize(tok, Render(tmpl, ex, objective), ex.index, c.prompt.max_seq_len));
  for (const auto& ex : split.val)
    d.val.push_back(Tokenize(tok, Render(tmpl, ex, objective), ex.index, c.prompt.max_seq_len));
  return d;
}

torch::Device PickDevice(const Config& c, int local_rank) {
  const int gpus = compat::CudaDeviceCount();
  if (c.model.device == "cpu" || (c.model.device == "auto" && gpus == 0)) return torch::Device(torch::kCPU);
  DFAR_CHECK(gpus > 0, "model.device=cuda but no CUDA device is visible");
  DFAR_CHECK(local_rank < gpus, "local rank ", local_rank, " has no GPU (", gpus, " visible)");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
}

torch::ScalarType PickDtype(const Config& c, const torch::Device& device) {
  if (c.model.dtype == "bf16" || (c.model.dtype == "auto" && device.is_cuda())) return torch::kBFloat16;
  return torch::kFloat;
}

// Every rank's topology line, printed by rank 0 and kept in each rank's log.
void LogTopology(Communicator& comm) {
  World world = DiscoverWorld(compat::CudaDeviceCount());
  world.rank = comm.rank();
  world.size = comm.size();
  world.threads = at::get_num_threads();
  spdlog::info("topology: {}", world.TopologyLine());
  const auto lines = comm.AllGatherBytes(world.TopologyLine());
  if (comm.rank() == 0)
    for (const auto& line : lines) std::fprintf(stderr, "dfar: %s\n", line.c_str());
}

class Trainer {
 public:
  Trainer(const Config& config, const TrainOptions& options, Communicator& comm);
  TrainSummary Run();

 private:
  void BuildModel();
  void BuildOptimizer();
  double TrainStep(int64_t step, double* tokens);
  double ValidationLoss();
  void LogStep(int64_t step, double loss, double lr, double norm, double tokens, double samples, double secs,
               bool skipped);
  std::string SaveCheckpoint(int64_t step);
  void Restore(const std::string& dir);
  int64_t TotalSteps() const;
  bool StopRequested();
  // Where tensors are reduced: NCCL for CUDA parameters, else the host communicator.
  Communicator& TensorComm() { return device_comm_ ? *device_comm_ : comm_; }
  void OpenDeviceCommunicator();
  void AddDeviceMetrics(nlohmann::json& j, double secs);

  Config config_;
  TrainOptions options_;
  Communicator& comm_;
  std::unique_ptr<Communicator> device_comm_;  // NCCL, when parameters live on a CUDA device.
  torch::Device device_{torch::kCPU};
  double step_flops_ = 0;                    // Model FLOPs of the last step on this rank, for MFU (CUDA only).
  std::unique_ptr<TrainFlopCounter> flops_;  // Set on CUDA only.
  double peak_memory_bytes_ = 0;
  PretrainedModel model_;
  Dataset data_;
  std::unique_ptr<ShardedSampler> sampler_;
  std::unique_ptr<StepEngine> engine_;
  std::unique_ptr<CheckpointWriter> writer_;
  LrSchedule schedule_;
  std::ofstream metrics_;
  int64_t start_step_ = 0;
  int64_t skipped_total_ = 0;
  int64_t consecutive_skips_ = 0;
  double last_loss_ = 0;
};

Trainer::Trainer(const Config& config, const TrainOptions& options, Communicator& comm)
    : config_(config), options_(options), comm_(comm) {
  // Same seed on every rank while the model is built (LoRA init), then a
  // per-rank stream for dropout.
  torch::manual_seed(config_.run.seed);
  BuildModel();
  data_ = TokenizeData(config_, *model_.tokenizer);
  std::vector<int64_t> lengths;
  for (const auto& t : data_.train) lengths.push_back(static_cast<int64_t>(t.ids.size()));
  SamplerConfig per_step = config_.sampler;
  per_step.micro_batch *= config_.train.grad_accum;
  per_step.group_window = std::max(per_step.group_window, per_step.micro_batch);
  sampler_ = std::make_unique<ShardedSampler>(lengths, comm_.rank(), comm_.size(), per_step, config_.run.seed);
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
  if (comm_.rank() == 0)
    metrics_.open((fs::path(config_.run.dir) / "metrics.jsonl").string(),
                  options_.resume ? std::ios::app : std::ios::trunc);
}

void Trainer::BuildModel() {
  device_ = PickDevice(config_, DiscoverWorld().local_rank);
  model_ = LoadPretrained(config_.model.path);
  DFAR_CHECK(model_.tokenizer != nullptr, config_.model.path, ": the model carries no tokenizer");
  auto& d = model_.decoder;
  if (config_.lora.enabled) {
    d->EnableLora(config_.lora.targets, config_.lora.rank, config_.lora.alpha, config_.lora.dropout);
  }
  d->set_activation_checkpointing(config_.model.activation_checkpointing);
  d->set_attention_kernel(config_.model.attention == "math" ? AttentionKernel::kMath : AttentionKernel::kSdpa);
  d->to(device_, PickDtype(config_, device_));
  d->train();
}

void Trainer::BuildOptimizer() {
  OpenDeviceCommunicator();
  StepEngineOptions o;
  o.zero = static_cast<int>(config_.dist.zero);
  o.bucket_mb = config_.dist.bucket_mb;
  o.adamw.weight_decay = config_.train.weight_decay;
  engine_ = std::make_unique<StepEngine>(model_.decoder, comm_, TensorComm(), o);
  if (device_.is_cuda()) flops_ = std::make_unique<TrainFlopCounter>(model_.decoder);
  schedule_ = MakeSchedule(config_.train.schedule, config_.train.lr, TotalSteps(), config_.train.warmup_ratio);
  spdlog::info("trainable parameters: {} in {} buckets; optimizer state {:.1f} MB on this rank (ZeRO {})",
               engine_->trainable(), engine_->flat().buckets().size(), engine_->optimizer().state_bytes() / 1e6,
               config_.dist.zero);
}

// CUDA parameters are reduced over NCCL (its unique id travels over the host
// communicator); scalars, metadata and checkpoints stay on the host one.
void Trainer::OpenDeviceCommunicator() {
  if (!device_.is_cuda()) return;
#if defined(DFAR_WITH_NCCL)
  device_comm_ = MakeNcclCommunicator(comm_, device_.index());
  spdlog::info("gradients reduce over NCCL on cuda:{} ({} ranks)", device_.index(), comm_.size());
#else
  DFAR_CHECK(comm_.size() == 1, "model.device=cuda with ", comm_.size(),
             " ranks needs the NCCL backend, and this build has none (rebuild where CUDA and NCCL are found)");
#endif
}

// MFU and device memory, for metrics.jsonl on CUDA.
void Trainer::AddDeviceMetrics(nlohmann::json& j, double secs) {
  j["peak_memory_gb"] = nullptr;
  j["mfu"] = nullptr;
#if defined(DFAR_WITH_NCCL)
  const int device = device_.index();
  peak_memory_bytes_ = std::max(peak_memory_bytes_, static_cast<double>(CudaMemoryInUseBytes(device)));
  if (peak_memory_bytes_ > 0) j["peak_memory_gb"] = peak_memory_bytes_ / 1e9;
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

// Splits this rank's share of one global batch into grad_accum micro-batches.
std::vector<std::vector<int64_t>> SplitMicroBatches(const std::vector<int64_t>& rows, int64_t parts) {
  std::vector<std::vector<int64_t>> out;
  const int64_t n = static_cast<int64_t>(rows.size()), per = (n + parts - 1) / parts;
  for (int64_t i = 0; i < n; i += per) out.emplace_back(rows.begin() + i, rows.begin() + std::min(n, i + per));
  return out;
}

double Trainer::TrainStep(int64_t step, double* tokens) {
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
  return engine_->ForwardBackward(micro, counts[0], InjectNonFinite(step));
}

double Trainer::ValidationLoss() {
  if (data_.val.empty()) return std::nan("");
  torch::NoGradGuard no_grad;
  model_.decoder->eval();
  const Range r = EvalShard(static_cast<int64_t>(data_.val.size()), comm_.rank(), comm_.size());
  double sums[2] = {0, 0};
  for (int64_t i = r.begin; i < r.end; i += config_.sampler.micro_batch) {
    std::vector<TokenizedExample> rows;
    for (int64_t j = i; j < std::min(r.end, i + config_.sampler.micro_batch); ++j)
      rows.push_back(data_.val[static_cast<size_t>(j)]);
    const Batch b = CollatePadded(rows, model_.tokenizer->pad_id());
    sums[0] += SupervisedCrossEntropySum(model_.decoder, ToTensors(b, false, device_)).item<double>();
    sums[1] += static_cast<double>(b.supervised_tokens);
  }
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
    spdlog::info("step {}/{} loss {:.4f} lr {:.3e} grad_norm {:.3f} tok/s {:.0f} eta {:.0f}s{}", step + 1, total, loss,
                 lr, norm, tokens / secs, eta, skipped ? " (skipped: non-finite)" : "");
  }
}

bool Trainer::StopRequested() {
  int32_t stop = g_stop_signal.load() != 0 ? 1 : 0;
  comm_.AllReduce(&stop, 1, DType::kInt32, ReduceOp::kMax);
  return stop != 0;
}

std::string Trainer::SaveCheckpoint(int64_t step) {
  SaveRequest req;
  req.step = step;
  req.meta = {
      {"config_yaml", ConfigToYaml(config_)},
      {"model_identity", ModelIdentity(config_.model.path)},
      {"cursor", {{"epoch", sampler_->cursor().epoch}, {"step", sampler_->cursor().step}}},
      {"world_size", comm_.size()},
      {"global_batch", comm_.size() * config_.sampler.micro_batch * config_.train.grad_accum},
      {"optimizer_steps", engine_->optimizer().steps()},
      {"skipped_steps", skipped_total_},
      {"scheduler",
       {{"kind", schedule_.kind}, {"total_steps", schedule_.total_steps}, {"warmup_steps", schedule_.warmup_steps}}}};
  req.rank_meta = {{"rng", CaptureRngState()}};
  req.chunks = CollectStateChunks(engine_->flat(), engine_->optimizer(), static_cast<int>(config_.dist.zero),
                                  comm_.rank(), comm_.size());
  const std::string dir = writer_->Save(std::move(req));
  spdlog::info("checkpoint step {} -> {}", step, dir);
  return dir;
}

void Trainer::Restore(const std::string& dir) {
  const CheckpointReader reader = CheckpointReader::Open(dir);
  const auto& meta = reader.meta();
  DFAR_CHECK(meta.value("model_identity", "") == ModelIdentity(config_.model.path), dir,
             ": the checkpoint was trained from another base model than ", config_.model.path);
  const int64_t global_batch = meta.value("global_batch", int64_t{0});
  const int64_t mine = comm_.size() * config_.sampler.micro_batch * config_.train.grad_accum;
  DFAR_CHECK(global_batch == mine, dir,
             ": resuming needs the same global batch (world x micro_batch x grad_accum = ", global_batch,
             "), this run has ", mine);
  RestoreState(reader, engine_->flat(), engine_->optimizer());
  engine_->optimizer().set_steps(meta.value("optimizer_steps", int64_t{0}));
  skipped_total_ = meta.value("skipped_steps", int64_t{0});
  SamplerCursor cursor;
  cursor.epoch = meta["cursor"].value("epoch", int64_t{0});
  cursor.step = meta["cursor"].value("step", int64_t{0});
  sampler_->Seek(cursor);
  if (reader.world_size() == comm_.size()) RestoreRngState(reader.index()["ranks"][comm_.rank()]["rng"]);
  start_step_ = reader.step();
  spdlog::info("resumed from {} at step {}", dir, start_step_);
}

TrainSummary Trainer::Run() {
  TrainSummary summary;
  const auto t0 = Clock::now();
  const int64_t total = schedule_.total_steps;
  for (int64_t step = start_step_; step < total; ++step) {
    const auto ts = Clock::now();
    double tokens = 0;
    const double loss = TrainStep(step, &tokens);
    const double lr = schedule_.At(step);
    const StepResult r = engine_->Update(loss, lr, config_.train.grad_clip);
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
    const double samples = static_cast<double>(config_.sampler.micro_batch * config_.train.grad_accum * comm_.size());
    LogStep(step, loss, lr, norm, tokens, samples, Seconds(ts), skip);
    last_loss_ = loss;
    summary.steps = step + 1;
    summary.last_grad_norm = norm;
    if (config_.train.eval_every > 0 && (step + 1) % config_.train.eval_every == 0)
      spdlog::info("validation loss at step {}: {:.4f}", step + 1, ValidationLoss());
    const bool stop = StopRequested();
    if ((config_.ckpt.every > 0 && (step + 1) % config_.ckpt.every == 0) || step + 1 == total || stop)
      summary.last_checkpoint = SaveCheckpoint(step + 1);
    if (stop) {
      spdlog::warn("stop signal received: checkpointed at step {} and exiting", step + 1);
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
  LogTopology(comm);
  if (comm.rank() == 0) WriteFileAtomic((fs::path(config.run.dir) / "config.yaml").string(), ConfigToYaml(config));
  std::signal(SIGTERM, OnStopSignal);
  std::signal(SIGUSR1, OnStopSignal);
  Trainer trainer(config, options, comm);
  return trainer.Run();
}

}  // namespace dfar
