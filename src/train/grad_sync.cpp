#include "dfar/train/grad_sync.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "dfar/comm/watchdog.h"
#include "dfar/core/error.h"

namespace dfar {
namespace {

DType CommDType(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat:
      return DType::kFloat32;
    case torch::kDouble:
      return DType::kFloat64;
    case torch::kBFloat16:
      return DType::kBFloat16;
    case torch::kHalf:
      return DType::kFloat16;
    default:
      break;
  }
  DFAR_THROW("gradients of dtype ", t.scalar_type(), " cannot be synchronised");
}

// Runs after AccumulateGrad wrote a parameter's gradient into the flat buffer.
class GradReadyHook : public torch::autograd::FunctionPostHook {
 public:
  GradReadyHook(std::function<void()> fn) : fn_(std::move(fn)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    fn_();
    return outputs;
  }

 private:
  std::function<void()> fn_;
};

}  // namespace

GradientSync::GradientSync(FlatParameters& flat, Communicator& comm, int zero_stage,
                           const std::vector<torch::Tensor>& params)
    : flat_(flat), comm_(comm), zero_(zero_stage) {
  DFAR_CHECK(zero_ >= 0 && zero_ <= 2, "dist.zero must be 0, 1 or 2, got ", zero_);
  if (zero_ == 0) {
    owned_.push_back({0, flat_.numel()});
  } else {
    for (const auto& b : flat_.buckets()) {
      const int64_t begin = b.begin + comm_.rank() * b.part();
      owned_.push_back({begin, begin + b.part()});
    }
  }
  pending_.assign(flat_.buckets().size(), 0);
  for (size_t b = 0; b < flat_.buckets().size(); ++b)
    bucket_labels_.push_back("grad_sync bucket " + std::to_string(b + 1) + "/" +
                             std::to_string(flat_.buckets().size()));
  works_.resize(flat_.buckets().size());
  scatter_out_.resize(flat_.buckets().size());
  RegisterHooks(params);
}

GradientSync::~GradientSync() {
  alive_.reset();  // Disarms the hooks left on the parameters' accumulators.
  for (auto& w : works_)
    if (w) w->Wait();
}

void GradientSync::RegisterHooks(const std::vector<torch::Tensor>& params) {
  DFAR_CHECK(params.size() == flat_.entries().size(), "GradientSync needs the FlatParameters' own tensors");
  for (size_t i = 0; i < params.size(); ++i) {
    auto acc = torch::autograd::impl::grad_accumulator(params[i]);
    DFAR_CHECK(acc != nullptr, "parameter '", flat_.entries()[i].name, "' has no gradient accumulator");
    // The hook outlives this object on the parameter's accumulator (libtorch
    // cannot remove it), so it holds only a weak token: once this GradientSync
    // is gone, the hook does nothing.
    std::weak_ptr<int> alive = alive_;
    acc->add_post_hook(std::make_unique<GradReadyHook>([this, i, alive] {
      if (alive.lock()) OnGradReady(i);
    }));
    accumulators_.push_back(std::move(acc));
  }
}

void GradientSync::BeginBackward(bool sync) {
  std::lock_guard<std::mutex> lock(mu_);
  sync_ = sync;
  next_launch_ = 0;
  for (size_t b = 0; b < flat_.buckets().size(); ++b) pending_[b] = static_cast<int>(flat_.buckets()[b].entries.size());
}

void GradientSync::OnGradReady(size_t entry) {
  std::lock_guard<std::mutex> lock(mu_);
  if (flat_.separate_main_grad()) {
    // Accumulate in the reduce dtype, and clear the compute-dtype slot so the
    // next micro-step's autograd write starts from zero.
    torch::NoGradGuard no_grad;
    const FlatEntry& e = flat_.entries()[entry];
    auto landed = flat_.grad().narrow(0, e.offset, e.numel);
    flat_.main_grad().narrow(0, e.offset, e.numel).add_(landed);
    landed.zero_();
  }
  if (!sync_ || comm_.size() == 1) return;
  --pending_[flat_.BucketOf(entry)];
  LaunchReadyInOrder();
}

void GradientSync::LaunchReadyInOrder() {
  while (next_launch_ < pending_.size() && pending_[next_launch_] <= 0) LaunchBucket(next_launch_++);
}

void GradientSync::LaunchBucket(size_t b) {
  const Bucket& bucket = flat_.buckets()[b];
  auto range = flat_.main_grad().narrow(0, bucket.begin, bucket.end - bucket.begin);
  const DType dtype = CommDType(range);
  CollectiveSite site(bucket_labels_[b].c_str());
  if (zero_ == 2) {
    scatter_out_[b] = torch::empty({bucket.part()}, range.options());
    works_[b] = comm_.ReduceScatterAsync(range.data_ptr(), scatter_out_[b].data_ptr(),
                                         static_cast<size_t>(bucket.part()), dtype, ReduceOp::kSum);
  } else {
    works_[b] = comm_.AllReduceAsync(range.data_ptr(), static_cast<size_t>(range.numel()), dtype, ReduceOp::kSum);
  }
  ++launched_total_;
}

void GradientSync::Finish() {
  if (comm_.size() == 1) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!sync_) return;
    while (next_launch_ < pending_.size()) LaunchBucket(next_launch_++);
  }
  for (size_t b = 0; b < works_.size(); ++b) {
    if (!works_[b]) continue;
    works_[b]->Wait();
    works_[b].reset();
    if (zero_ == 2) {
      const Bucket& bucket = flat_.buckets()[b];
      flat_.main_grad().narrow(0, bucket.begin + comm_.rank() * bucket.part(), bucket.part()).copy_(scatter_out_[b]);
      scatter_out_[b] = torch::Tensor();
    }
  }
}

void GradientSync::GatherParameters() {
  if (zero_ == 0 || comm_.size() == 1) return;
  std::vector<std::shared_ptr<Work>> works;
  CollectiveSite site("zero parameter all-gather");
  for (const auto& bucket : flat_.buckets()) {
    auto range = flat_.data().narrow(0, bucket.begin, bucket.end - bucket.begin);
    auto mine = range.narrow(0, comm_.rank() * bucket.part(), bucket.part());
    works.push_back(
        comm_.AllGatherAsync(mine.data_ptr(), range.data_ptr(), static_cast<size_t>(bucket.part()), CommDType(range)));
  }
  for (auto& w : works) w->Wait();
}

}  // namespace dfar
