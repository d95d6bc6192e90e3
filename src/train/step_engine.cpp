#include "dfar/train/step_engine.h"

#include <cmath>
#include <limits>
#include <string>
#include <utility>

namespace dfar {

StepEngine::StepEngine(Decoder decoder, Communicator& host, Communicator& tensors, const StepEngineOptions& options)
    : decoder_(std::move(decoder)), host_(host), zero_(options.zero) {
  std::vector<std::pair<std::string, torch::Tensor>> named;
  std::vector<torch::Tensor> params;
  for (const auto& p : decoder_->named_parameters()) {
    if (!p.value().requires_grad()) continue;
    named.emplace_back(p.key(), p.value());
    params.push_back(p.value());
  }
  flat_ = std::make_unique<FlatParameters>(named, tensors.size(), options.bucket_mb);
  tensors.Broadcast(flat_->data().data_ptr(), static_cast<size_t>(flat_->data().nbytes()), DType::kUInt8, 0);
  sync_ = std::make_unique<GradientSync>(*flat_, tensors, zero_, params);
  optim_ = std::make_unique<AdamW>(*flat_, sync_->owned(), options.adamw);
}

double StepEngine::ForwardBackward(const std::vector<BatchTensors>& micro, double global_supervised, bool poison) {
  double ce_sum = 0;
  for (size_t k = 0; k < micro.size(); ++k) {
    sync_->BeginBackward(k + 1 == micro.size());
    auto ce = SupervisedCrossEntropySum(decoder_, micro[k]);
    if (poison) ce = ce * std::numeric_limits<float>::quiet_NaN();
    ce_sum += ce.item<double>();
    (ce / global_supervised).backward();
  }
  sync_->Finish();
  host_.AllReduce(&ce_sum, 1, DType::kFloat64, ReduceOp::kSum);
  return ce_sum / global_supervised;
}

StepResult StepEngine::Update(double loss, double lr, double grad_clip) {
  StepResult r;
  r.grad_norm = ClipGradNorm(*flat_, sync_->owned(), grad_clip, host_, zero_ > 0);
  r.skipped = !std::isfinite(r.grad_norm) || !std::isfinite(loss);
  if (!r.skipped) {
    optim_->Step(lr);
    sync_->GatherParameters();
  }
  flat_->grad().zero_();
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
