#include "dfar/train/grad_sync.h"

#include <algorithm>

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "comm_dtype.h"
#include "dfar/comm/watchdog.h"
#include "dfar/core/error.h"

namespace dfar {
namespace {

DType CommDType(const torch::Tensor& t) {
  return CommDTypeOf(t.scalar_type(), "gradients");
}

// A zeroed staging buffer of n elements in `slot` (ZeRO 2/3), counted in the
// live and peak staging bytes; an existing one is kept.
void EnsureStaging(torch::Tensor& slot, int64_t n, const torch::TensorOptions& options, int64_t& bytes, int64_t& peak) {
  if (slot.defined()) return;
  slot = torch::zeros({n}, options);
  bytes += slot.nbytes();
  peak = std::max(peak, bytes);
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

GradientSync::GradientSync(FlatParameters& flat, Communicator& comm, const std::vector<torch::Tensor>& params)
    : flat_(flat), comm_(comm), zero_(flat.zero()), params_(params) {
  DFAR_CHECK(flat_.layout().world == comm_.size() && flat_.layout().rank == comm_.rank(),
             "the flat parameters were laid out for rank ", flat_.layout().rank, " of ", flat_.layout().world,
             ", not rank ", comm_.rank(), " of ", comm_.size());
  const size_t n = flat_.buckets().size();
  pending_.assign(n, 0);
  for (size_t b = 0; b < n; ++b)
    bucket_labels_.push_back("grad_sync bucket " + std::to_string(b + 1) + "/" + std::to_string(n));
  works_.resize(n);
  staging_.resize(n);
  scatter_out_.resize(n);
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
  torch::NoGradGuard no_grad;
  const FlatEntry& e = flat_.entries()[entry];
  if (flat_.shards_gradients()) {
    StageGradient(entry);
  } else if (flat_.separate_main_grad()) {
    // Accumulate in the reduce dtype, and clear the compute-dtype slot so the
    // next micro-step's autograd write starts from zero.
    auto landed = flat_.grad().narrow(0, e.offset, e.numel);
    flat_.main_grad().narrow(0, e.offset, e.numel).add_(landed);
    landed.zero_();
  }
  const size_t b = flat_.BucketOf(entry);
  if (--pending_[b] == 0 && on_bucket_done_) on_bucket_done_(b);
  if (flat_.shards_gradients() || (sync_ && comm_.size() > 1)) LaunchReadyInOrder();
}

// ZeRO 2/3: the landed gradient moves into its bucket's staging buffer, and
// the parameter lets go of it.
void GradientSync::StageGradient(size_t entry) {
  const FlatEntry& e = flat_.entries()[entry];
  const size_t b = flat_.BucketOf(entry);
  const Bucket& bucket = flat_.buckets()[b];
  DFAR_CHECK(b >= next_launch_, "the gradient of '", e.name, "' arrived after its bucket was reduced");
  auto& staging = staging_[b];
  EnsureStaging(staging, bucket.end - bucket.begin,
                torch::TensorOptions().dtype(flat_.grad_dtype()).device(flat_.device()), staging_bytes_,
                peak_staging_bytes_);
  torch::Tensor& grad = params_[entry].mutable_grad();
  if (grad.defined()) staging.narrow(0, e.offset - bucket.begin, e.numel).add_(grad.reshape({-1}));
  grad.reset();
}

void GradientSync::LaunchReadyInOrder() {
  while (next_launch_ < pending_.size() && pending_[next_launch_] <= 0) LaunchBucket(next_launch_++);
}

void GradientSync::LaunchBucket(size_t b) {
  const Bucket& bucket = flat_.buckets()[b];
  CollectiveSite site(bucket_labels_[b].c_str());
  ++launched_total_;
  if (!flat_.shards_gradients()) {
    auto range = flat_.main_grad().narrow(0, bucket.begin, bucket.end - bucket.begin);
    works_[b] =
        comm_.AllReduceAsync(range.data_ptr(), static_cast<size_t>(range.numel()), CommDType(range), ReduceOp::kSum);
    return;
  }
  // A bucket where no gradient landed (unused parameters) takes part as zeros.
  EnsureStaging(staging_[b], bucket.end - bucket.begin,
                torch::TensorOptions().dtype(flat_.grad_dtype()).device(flat_.device()), staging_bytes_,
                peak_staging_bytes_);
  if (comm_.size() > 1) {
    scatter_out_[b] = torch::empty({bucket.part()}, staging_[b].options());
    works_[b] = comm_.ReduceScatterAsync(staging_[b].data_ptr(), scatter_out_[b].data_ptr(),
                                         static_cast<size_t>(bucket.part()), CommDType(staging_[b]), ReduceOp::kSum);
  }
  in_flight_.push_back(b);
  while (in_flight_.size() > kMaxStagedBuckets) {
    CompleteBucket(in_flight_.front());
    in_flight_.pop_front();
  }
}

// ZeRO 2/3: waits for bucket b's reduce-scatter, adds the owned part into
// the persistent owned gradient and frees the staging.
void GradientSync::CompleteBucket(size_t b) {
  if (works_[b]) {
    works_[b]->Wait();
    works_[b].reset();
  }
  auto owned = flat_.owned_grad(flat_.OwnedRangeOfBucket(b));
  owned.add_(comm_.size() > 1 ? scatter_out_[b] : staging_[b]);
  staging_bytes_ -= staging_[b].nbytes();
  staging_[b] = torch::Tensor();
  scatter_out_[b] = torch::Tensor();
}

void GradientSync::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  torch::NoGradGuard no_grad;
  if (flat_.shards_gradients()) {
    while (next_launch_ < pending_.size()) LaunchBucket(next_launch_++);
    for (size_t b : in_flight_) CompleteBucket(b);
    in_flight_.clear();
    return;
  }
  if (comm_.size() == 1 || !sync_) return;
  while (next_launch_ < pending_.size()) LaunchBucket(next_launch_++);
  for (auto& w : works_) {
    if (!w) continue;
    w->Wait();
    w.reset();
  }
}

void GradientSync::GatherParameters() {
  if (zero_ == 0 || zero_ == 3 || comm_.size() == 1) return;
  std::vector<std::shared_ptr<Work>> works;
  CollectiveSite site("zero parameter all-gather");
  for (size_t b = 0; b < flat_.buckets().size(); ++b) {
    auto range = flat_.bucket_values(b);
    auto mine = flat_.owned_values(b);
    works.push_back(
        comm_.AllGatherAsync(mine.data_ptr(), range.data_ptr(), static_cast<size_t>(mine.numel()), CommDType(range)));
  }
  for (auto& w : works) w->Wait();
}

}  // namespace dfar
