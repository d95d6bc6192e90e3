#include "dfar/eval/evaluator.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "dfar/core/error.h"
#include "dfar/core/logging.h"
#include "dfar/core/torch_compat.h"
#include "dfar/data/collate.h"
#include "dfar/data/dataset.h"
#include "dfar/data/sampler.h"
#include "dfar/eval/verdict.h"
#include "dfar/model/generate.h"

namespace dfar {
namespace {

using Clock = std::chrono::steady_clock;

ExampleResult BaseResult(const Example& ex) {
  ExampleResult r;
  r.index = ex.index;
  r.statement = ex.statement;
  r.gold = ex.label;
  r.gold_reason = ex.reason;
  return r;
}

// Batches of at most `size` positions into `examples`, shortest prompts first:
// similar lengths waste less padding, and each result carries its own index,
// so the order here never reaches the report.
std::vector<std::vector<size_t>> LengthSortedBatches(const std::vector<int64_t>& lengths, int64_t size) {
  std::vector<size_t> order(lengths.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return lengths[a] < lengths[b]; });
  std::vector<std::vector<size_t>> batches;
  for (size_t i = 0; i < order.size(); i += static_cast<size_t>(size)) {
    const size_t end = std::min(order.size(), i + static_cast<size_t>(size));
    batches.emplace_back(order.begin() + i, order.begin() + end);
  }
  return batches;
}

void GenerateBatch(PretrainedModel& m, const PromptTemplate& tmpl, const EvalConfig& ec,
                   const std::vector<std::vector<int32_t>>& prompts, std::vector<ExampleResult*> out, RankStats* stats,
                   bool stop_at_verdict) {
  GenerationOptions options;
  options.max_new_tokens = ec.max_new_tokens;
  if (stop_at_verdict) {
    options.stop_when = [prefix = AnswerPrefix(tmpl.target_l)](const std::string& text) {
      return VerdictSentenceEnded(text, prefix);
    };
  }
  const std::vector<Generation> gens = Generate(m.decoder, *m.tokenizer, prompts, options);
  for (size_t i = 0; i < gens.size(); ++i) {
    ExampleResult& r = *out[i];
    r.generated = SanitizeUtf8(gens[i].text);
    const Verdict v = ParseVerdict(r.generated, tmpl.ethical_word, tmpl.unethical_word, AnswerPrefix(tmpl.target_l));
    r.predicted = v.label;
    r.reason = ExtractReason(r.generated, v);
    r.prompt_tokens = static_cast<int64_t>(prompts[i].size());
    r.generated_tokens = static_cast<int64_t>(gens[i].ids.size());
    r.stop_reason = gens[i].stop_reason;
    stats->prompt_tokens += r.prompt_tokens;
    stats->generated_tokens += r.generated_tokens;
  }
}

// [bos] prompt target, as training tokenises it (PromptIds), without the EOS: the
// continuation scored is the label text itself.
TokenizedExample LabelContinuation(const Tokenizer& tok, const PromptTemplate& tmpl, const Example& ex, int label,
                                   int64_t max_len) {
  Example labelled = ex;
  labelled.label = label;
  TokenizedExample t = Tokenize(tok, Render(tmpl, labelled, Objective::kLabel), ex.index, max_len);
  if (!t.truncated && tok.eos_id() >= 0 && !t.ids.empty() && t.ids.back() == tok.eos_id()) t.ids.pop_back();
  DFAR_CHECK(static_cast<int64_t>(t.ids.size()) > t.prompt_len, "example ", ex.index,
             ": the label continuation encodes to no tokens");
  return t;
}

torch::Tensor ToLong(const std::vector<int32_t>& v, int64_t rows, int64_t cols, const torch::Device& device) {
  return torch::tensor(v, torch::kInt).view({rows, cols}).to(torch::kLong).to(device);
}

// Mean of log p(label token) over each row's supervised positions: [rows].
// The mean, not the sum: label continuations differ in length ("ethical" vs
// "unethical" can be 1 vs 2 tokens), and a sum favours the shorter one.
torch::Tensor RowMeanLogLikelihoods(Decoder& decoder, const Batch& b) {
  const torch::Device device = decoder->embed->weight.device();
  const torch::Tensor labels = ToLong(b.labels, b.rows, b.cols, device);
  const torch::Tensor hidden =
      decoder->forward({ToLong(b.input_ids, b.rows, b.cols, device), ToLong(b.position_ids, b.rows, b.cols, device),
                        ToLong(b.segment_ids, b.rows, b.cols, device)});
  const torch::Tensor mask = labels != kIgnoreIndex;
  const torch::Tensor logp = torch::log_softmax(decoder->Logits(hidden.index({mask})).to(torch::kFloat), -1);
  const torch::Tensor token_lp = logp.gather(1, labels.index({mask}).unsqueeze(1)).squeeze(1);
  const torch::Tensor rows = mask.nonzero().select(1, 0);
  const torch::Tensor sums = torch::zeros({b.rows}, token_lp.options()).index_add_(0, rows, token_lp);
  const torch::Tensor counts = mask.sum(1).to(token_lp.scalar_type()).clamp_min(1);
  return (sums / counts).to(torch::kCPU).to(torch::kDouble);
}

void ScoreBatch(PretrainedModel& m, const PromptTemplate& tmpl, const Config& config,
                const std::vector<const Example*>& examples, std::vector<ExampleResult*> out, RankStats* stats) {
  std::vector<TokenizedExample> rows;
  for (const Example* ex : examples) {
    for (int label : {kEthical, kUnethical})
      rows.push_back(LabelContinuation(*m.tokenizer, tmpl, *ex, label, config.prompt.max_seq_len));
  }
  const Batch batch = CollatePadded(rows, std::max(m.tokenizer->pad_id(), 0));
  const torch::Tensor lp = RowMeanLogLikelihoods(m.decoder, batch);
  for (size_t i = 0; i < examples.size(); ++i) {
    ExampleResult& r = *out[i];
    r.logprob_ethical = lp[2 * i].item<double>();
    r.logprob_unethical = lp[2 * i + 1].item<double>();
    r.predicted = r.logprob_unethical > r.logprob_ethical ? kUnethical : kEthical;
    r.generated = r.predicted == kEthical ? tmpl.ethical_word : tmpl.unethical_word;
    r.prompt_tokens = rows[2 * i].prompt_len;
  }
  stats->prompt_tokens += batch.real_tokens;
}

// Checked on every rank before any work, so that all ranks fail alike
// instead of some waiting in the gather for a rank that gave up.
void CheckEvalInputs(const PretrainedModel& model, const Config& config) {
  DFAR_CHECK(model.tokenizer != nullptr, model.source, ": the model has no tokenizer; eval needs one");
  const EvalConfig& ec = config.eval;
  DFAR_CHECK(ec.mode == "generate" || ec.mode == "likelihood", "eval.mode must be generate or likelihood, got '",
             ec.mode, "'");
  DFAR_CHECK(ec.batch_size >= 1, "eval.batch_size must be >= 1, got ", ec.batch_size);
  DFAR_CHECK(ec.max_new_tokens >= 1 || ec.mode == "likelihood", "eval.max_new_tokens must be >= 1, got ",
             ec.max_new_tokens);
}

bool ShouldLogProgress(size_t done, size_t total) {
  const size_t every = std::max<size_t>(1, total / 10);
  return done == total || done % every == 0;
}

}  // namespace

bool ReasonsAreRead(const Config& config, const std::vector<Example>& examples) {
  if (ParseObjective(config.prompt.objective) != Objective::kLabelReason) return false;
  return std::any_of(examples.begin(), examples.end(), [](const Example& ex) { return !ex.reason.empty(); });
}

std::vector<ExampleResult> EvaluateLocal(PretrainedModel& model, const PromptTemplate& tmpl, const Config& config,
                                         const std::vector<Example>& examples, RankStats* stats, bool stop_at_verdict) {
  CheckEvalInputs(model, config);
  const EvalConfig& ec = config.eval;
  torch::NoGradGuard no_grad;
  model.decoder->eval();
  std::vector<ExampleResult> results;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int64_t> lengths;
  for (const Example& ex : examples) {
    results.push_back(BaseResult(ex));
    prompts.push_back(PromptIds(*model.tokenizer, tmpl, ex.statement));
    lengths.push_back(static_cast<int64_t>(prompts.back().size()));
  }
  const auto batches = LengthSortedBatches(lengths, ec.batch_size);
  for (size_t b = 0; b < batches.size(); ++b) {
    std::vector<ExampleResult*> out;
    std::vector<std::vector<int32_t>> batch_prompts;
    std::vector<const Example*> batch_examples;
    for (size_t i : batches[b]) {
      out.push_back(&results[i]);
      batch_prompts.push_back(prompts[i]);
      batch_examples.push_back(&examples[i]);
    }
    if (ec.mode == "generate") {
      GenerateBatch(model, tmpl, ec, batch_prompts, out, stats, stop_at_verdict);
    } else {
      ScoreBatch(model, tmpl, config, batch_examples, out, stats);
    }
    stats->examples += static_cast<int64_t>(out.size());
    if (ShouldLogProgress(b + 1, batches.size()))
      LogInfo("eval: batch {}/{} done ({} examples on this rank)", b + 1, batches.size(), stats->examples);
  }
  return results;
}

GatheredResults Evaluate(PretrainedModel& model, const Config& config, const std::vector<Example>& examples,
                         Communicator& comm, const ReasonJudge* judge) {
  CheckEvalInputs(model, config);
  const auto library = TemplateLibrary::Load(config.prompt.templates_file);
  const PromptTemplate& tmpl = library.Find(config.prompt.template_name);
  const Range range = EvalShard(static_cast<int64_t>(examples.size()), comm.rank(), comm.size());
  const std::vector<Example> mine(examples.begin() + range.begin, examples.begin() + range.end);
  RankStats stats;
  stats.rank = comm.rank();
  stats.device = model.decoder->embed->weight.device().str();
  LogInfo("eval: rank {}/{} scores examples [{}, {}) of {}", comm.rank(), comm.size(), range.begin, range.end,
          examples.size());
  const auto start = Clock::now();
  std::vector<ExampleResult> results;
  std::string error;
  // A failure here must still reach the gather, which every other rank is
  // about to enter: it travels in the payload and every rank raises it.
  try {
    if (!mine.empty()) results = EvaluateLocal(model, tmpl, config, mine, &stats, !ReasonsAreRead(config, examples));
    if (judge != nullptr) judge->Judge(results);
  } catch (const std::exception& e) {
    error = e.what();
    LogError("eval: rank {} failed: {}", comm.rank(), error);
  }
  stats.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<int64_t> expected;
  for (const Example& ex : examples) expected.push_back(ex.index);
  return GatherResults(comm, stats, results, expected, error);
}

}  // namespace dfar
