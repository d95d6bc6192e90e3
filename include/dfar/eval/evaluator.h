// The distributed evaluator: every test example scored exactly once.
//
// Owns: turning (model, config, examples) into per-example results and a
// report. Rank r of N takes the contiguous shard EvalShard(n, r, N) (sizes
// differ by at most one; no padding, no duplicates), decodes its own batches
// without ever waiting for other ranks, and only the final gather
// (GatherResults, one AllGatherBytes) is collective. Results come back in the
// examples' original order.
//
// Modes (eval.mode):
//   generate    prompt = PromptIds(tokenizer, template, statement) (collate.h:
//               BOS only when the tokenizer adds one), exactly as training
//               builds its context;
//               batched greedy decoding with the KV cache (eval.max_new_tokens,
//               stop on EOS, and at the end of the verdict's sentence where
//               no reason is read); the verdict is parsed from the text
//               (verdict.h) and the reason is the text after it.
//   likelihood  for each label, the mean log p per token of target_l given
//               the prompt (EOS excluded; the mean, because a sum favours the
//               shorter label), both labels of a batch in one forward; the
//               larger wins (ties go to ethical).
// Failure: dfar::Error for a model without a tokenizer, an unknown mode or
// template, an empty example list, a prompt beyond the model's context, and
// (from the gather) any example not scored exactly once.
// Thread-safety: uses the decoder exclusively; Evaluate and RunEvaluation are
// collective over `comm`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dfar/comm/communicator.h"
#include "dfar/core/config.h"
#include "dfar/core/world.h"
#include "dfar/data/example.h"
#include "dfar/data/prompt_template.h"
#include "dfar/eval/reason_judge.h"
#include "dfar/eval/report.h"
#include "dfar/eval/results.h"
#include "dfar/model/pretrained.h"
#include "dfar/runtime/run_setup.h"

namespace dfar {

// Whether the report reads generated reasons: objective L+R and at least one
// example with a human reason (DFAR; not ETHOS, which has none).
bool ReasonsAreRead(const Config& config, const std::vector<Example>& examples);

// Not collective: scores `examples` on this process in batches of
// eval.batch_size and adds to *stats (examples, tokens; not seconds).
// stop_at_verdict (generate mode): a row stops decoding once its first
// sentence has ended (VerdictSentenceEnded), because nothing after it is
// read; Evaluate sets it when !ReasonsAreRead. The verdicts are those of a
// full-length run; the generated text is shorter.
std::vector<ExampleResult> EvaluateLocal(PretrainedModel& model, const PromptTemplate& tmpl, const Config& config,
                                         const std::vector<Example>& examples, RankStats* stats,
                                         bool stop_at_verdict = false);

// Collective: this rank's shard (judged by `judge` when given: similarity
// and automatic misalignment, reason_judge.h), then the gather. Every rank
// receives all results.
GatheredResults Evaluate(PretrainedModel& model, const Config& config, const std::vector<Example>& examples,
                         Communicator& comm, const ReasonJudge* judge = nullptr);

// eval.out_dir, or <run.dir>/eval when it is empty.
std::string EvalOutDir(const Config& config);

// Moves the model to the run setup's device and dtype (the one placement
// rule, dfar/runtime/placement.h) and sets the intra-op threads
// (OMP_NUM_THREADS, else the cores shared among the node's ranks).
void PlaceForEval(PretrainedModel& model, const RunSetup& setup);

// Collective: loads data.test (eval.limit rows chosen by eval.subset), Evaluate, builds the
// report; rank 0 writes it (report.h) into EvalOutDir. Returns the report on
// every rank. `model_path` / `checkpoint` only label the report.
EvalReport RunEvaluation(PretrainedModel& model, const Config& config, const std::string& model_path,
                         const std::string& checkpoint, Communicator& comm);

}  // namespace dfar
