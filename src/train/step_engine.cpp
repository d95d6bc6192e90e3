#include "dfar/train/step_engine.h"

#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "dfar/core/error.h"

namespace dfar {

StepEngine::StepEngine(Decoder decoder, Communicator& tensors, const StepEngineOptions& options)
    : decoder_(std::move(decoder)), tensors_(tensors), zero_(options.zero) {
  std::vector<std::pair<std::string, torch::Tensor>> named;
  std::vector<torch::Tensor> params;
  for (const auto& p : decoder_->named_parameters()) {
    if (!p.value().requires_grad()) continue;
    named.emplace_back(p.key(), p.value());
    params.push_back(p.value());
  }
  FlatLayout layout;
  layout.world = tensors.size();
  layout.rank = tensors.rank();
  layout.bucket_mb = options.bucket_mb;
  layout.zero = options.zero;
  if (options.reduce_fp32) layout.reduce_dtype = torch::kFloat;
  flat_ = std::make_unique<FlatParameters>(named, layout);
  // Every bucket is full-size here, at every stage (ZeRO 3 frees them below).
  for (size_t b = 0; b < flat_->buckets().size(); ++b) {
    auto values = flat_->bucket_values(b);
    tensors.Broadcast(values.data_ptr(), static_cast<size_t>(values.nbytes()), DType::kUInt8, 0);
  }
  flat_->RefreshOwnedValues();
  sync_ = std::make_unique<GradientSync>(*flat_, tensors, params);
  optim_ = std::make_unique<AdamW>(*flat_, options.adamw);
  if (flat_->shards_parameters()) {
    gather_ = std::make_unique<ParameterGather>(*flat_, tensors, decoder_->config().num_layers);
    gather_->ReleaseAll();
    gather_->ResetPeak();
    sync_->set_on_bucket_done([g = gather_.get()](size_t b) { g->OnBucketDone(b); });
    decoder_->set_block_hooks(gather_.get());
  }
}

// No collective here (a destructor may run on one rank only, on an error
// path): under ZeRO 3 the model's trainable parameters stay released, so
// call GatherAllParameters() first to keep using the model.
StepEngine::~StepEngine() {
  if (gather_) decoder_->set_block_hooks(nullptr);
}

void StepEngine::ForwardBackward(const std::vector<BatchTensors>& micro, double global_supervised, bool poison) {
  global_supervised_ = global_supervised;
  // The loss stays on the device: no micro-step waits for the host.
  ce_sum_ = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(flat_->device()));
  for (size_t k = 0; k < micro.size(); ++k) {
    if (gather_) gather_->BeginMicroStep();
    sync_->BeginBackward(k + 1 == micro.size());
    auto ce = SupervisedCrossEntropySum(decoder_, micro[k]);
    if (poison) ce = ce * std::numeric_limits<float>::quiet_NaN();
    ce_sum_ += ce.detach().to(torch::kDouble);
    (ce / global_supervised).backward();
    sync_->Finish();
    if (gather_) gather_->FinishMicroStep();
  }
}

// The step's one host synchronisation: the loss sum and the squared gradient
// norm, reduced over ranks on the device where needed, come back together.
StepResult StepEngine::Update(double lr, double grad_clip) {
  DFAR_CHECK(ce_sum_.defined(), "StepEngine::Update called without ForwardBackward");
  const bool sharded = zero_ > 0 && tensors_.size() > 1;
  auto sq = GradSquaredNorm(*flat_);
  // [loss sum, sharded norm part] summed over ranks; an unsharded norm is
  // already global (every rank holds the full reduced gradient).
  auto reduced = torch::stack({ce_sum_, sharded ? sq : torch::zeros_like(sq)});
  if (tensors_.size() > 1) tensors_.AllReduce(reduced.data_ptr(), 2, DType::kFloat64, ReduceOp::kSum);
  const auto host = torch::cat({reduced, sq.unsqueeze(0)}).cpu();
  const double* v = host.data_ptr<double>();
  StepResult r;
  r.loss = v[0] / global_supervised_;
  r.grad_norm = std::sqrt(sharded ? v[1] : v[2]);
  r.skipped = !std::isfinite(r.grad_norm) || !std::isfinite(r.loss);
  ClipGradients(*flat_, r.grad_norm, grad_clip);
  if (!r.skipped) {
    optim_->Step(lr);
    sync_->GatherParameters();
  }
  flat_->ZeroGradients();
  ce_sum_ = torch::Tensor();
  return r;
}

void StepEngine::GatherAllParameters() {
  if (gather_) gather_->GatherAll();
}

void StepEngine::ReleaseAllParameters() {
  if (gather_) gather_->ReleaseAll();
}

std::map<std::string, torch::Tensor> StepEngine::FullGradients() {
  torch::Tensor full;
  if (!flat_->shards_gradients()) {
    full = flat_->main_grad().to(torch::kFloat).cpu();
  } else {
    full = torch::zeros({flat_->numel()}, torch::kFloat);
    for (size_t b = 0; b < flat_->buckets().size(); ++b) {
      const Bucket& bucket = flat_->buckets()[b];
      auto mine = flat_->owned_grad(b).to(torch::kFloat).contiguous();
      auto gathered = mine;
      if (tensors_.size() > 1) {
        gathered = torch::empty({bucket.end - bucket.begin}, mine.options());
        tensors_.AllGather(mine.data_ptr(), gathered.data_ptr(), static_cast<size_t>(mine.numel()), DType::kFloat32);
      }
      full.narrow(0, bucket.begin, gathered.numel()).copy_(gathered);
    }
  }
  std::map<std::string, torch::Tensor> out;
  for (const auto& e : flat_->entries()) out[e.name] = full.narrow(0, e.offset, e.numel).clone().view(e.shape);
  return out;
}

TrainFlopCounter::TrainFlopCounter(Decoder& decoder) {
  for (const auto& p : decoder->named_parameters()) {
    const std::string& name = p.key();
    const bool matmul = name.find("norm") == std::string::npos && name.find(".bias") == std::string::npos &&
                        name.rfind("embed.", 0) != 0;
    if (matmul) (p.value().requires_grad() ? trainable_ : frozen_) += static_cast<double>(p.value().numel());
  }
  // NF4 base weights (QLoRA) hold their values outside the parameter.
  for (const auto& m : decoder->modules(false))
    if (const auto* proj = dynamic_cast<const ProjImpl*>(m.get()); proj != nullptr && proj->nf4)
      frozen_ += static_cast<double>(proj->nf4->numel);
  if (decoder->config().tie_embeddings) {
    const auto& w = decoder->embed->weight;
    (w.requires_grad() ? trainable_ : frozen_) += static_cast<double>(w.numel());
  }
  const auto& c = decoder->config();
  layers_x_hidden_ = static_cast<double>(c.num_layers * c.hidden_size);
}

double TrainFlopCounter::PerToken(int64_t seq, bool activation_checkpointing) const {
  const double attention_fwd = 4.0 * layers_x_hidden_ * static_cast<double>(seq);
  double flops = 4.0 * frozen_ + 6.0 * trainable_ + 3.0 * attention_fwd;
  if (activation_checkpointing) flops += 2.0 * (frozen_ + trainable_) + attention_fwd;
  return flops;
}

double TrainFlopsPerToken(Decoder& decoder, int64_t seq, bool activation_checkpointing) {
  return TrainFlopCounter(decoder).PerToken(seq, activation_checkpointing);
}

}  // namespace dfar
