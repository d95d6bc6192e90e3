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
  c10::optional<torch::ScalarType> reduce;
  if (options.reduce_fp32) reduce = torch::kFloat;
  flat_ = std::make_unique<FlatParameters>(named, tensors.size(), options.bucket_mb, reduce);
  tensors.Broadcast(flat_->data().data_ptr(), static_cast<size_t>(flat_->data().nbytes()), DType::kUInt8, 0);
  sync_ = std::make_unique<GradientSync>(*flat_, tensors, zero_, params);
  optim_ = std::make_unique<AdamW>(*flat_, sync_->owned(), options.adamw);
}

void StepEngine::ForwardBackward(const std::vector<BatchTensors>& micro, double global_supervised, bool poison) {
  global_supervised_ = global_supervised;
  // The loss stays on the device: no micro-step waits for the host.
  ce_sum_ = torch::zeros({}, flat_->data().options().dtype(torch::kDouble));
  for (size_t k = 0; k < micro.size(); ++k) {
    sync_->BeginBackward(k + 1 == micro.size());
    auto ce = SupervisedCrossEntropySum(decoder_, micro[k]);
    if (poison) ce = ce * std::numeric_limits<float>::quiet_NaN();
    ce_sum_ += ce.detach().to(torch::kDouble);
    (ce / global_supervised).backward();
  }
  sync_->Finish();
}

// The step's one host synchronisation: the loss sum and the squared gradient
// norm, reduced over ranks on the device where needed, come back together.
StepResult StepEngine::Update(double lr, double grad_clip) {
  DFAR_CHECK(ce_sum_.defined(), "StepEngine::Update called without ForwardBackward");
  const bool sharded = zero_ > 0 && tensors_.size() > 1;
  auto sq = GradSquaredNorm(*flat_, sync_->owned());
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
  ClipGradients(*flat_, sync_->owned(), r.grad_norm, grad_clip);
  if (!r.skipped) {
    optim_->Step(lr);
    sync_->GatherParameters();
  }
  flat_->main_grad().zero_();
  if (flat_->separate_main_grad()) flat_->grad().zero_();
  ce_sum_ = torch::Tensor();
  return r;
}

TrainFlopCounter::TrainFlopCounter(Decoder& decoder) {
  for (const auto& p : decoder->named_parameters()) {
    const std::string& name = p.key();
    const bool matmul = name.find("norm") == std::string::npos && name.find(".bias") == std::string::npos &&
                        name.rfind("embed.", 0) != 0;
    if (matmul) (p.value().requires_grad() ? trainable_ : frozen_) += static_cast<double>(p.value().numel());
  }
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
