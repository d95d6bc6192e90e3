// Tokenised examples and batch collation, with completion-only loss.
//
// Owns: turning (prompt, target) text pairs into token ids with a
// supervision boundary, and packing or padding them into a Batch.
//
// Conventions (the model and loss rely on them):
// - labels are already shifted: labels[t] is the token the model must predict
//   at position t (i.e. input_ids[t+1] of the same sample), or kIgnoreIndex.
//   Only positions whose next token belongs to the target are supervised, so
//   no prompt token and no padding is ever a label.
// - segment_ids: 1, 2, ... for the samples packed into a row, 0 for padding.
//   Attention must stay within a segment.
// - position_ids restart at 0 at each segment start.
// Thread-safety: free functions.
#pragma once

#include <cstdint>
#include <vector>

#include "dfar/data/prompt_template.h"
#include "dfar/data/tokenizer.h"

namespace dfar {

constexpr int32_t kIgnoreIndex = -100;

struct TokenizedExample {
  int64_t index = 0;         // Example::index.
  std::vector<int32_t> ids;  // [bos] prompt target [eos]
  int64_t prompt_len = 0;    // ids[0, prompt_len) are context; the rest is supervised.
  bool truncated = false;    // The target was cut to fit max_len.
};

// The one prompt recipe: BOS when the tokenizer adds one (tok.add_bos()),
// then the encoded prompt text. Training (through Tokenize), both eval modes
// and `dfar generate` build prompts only through it, so evaluation scores
// exactly the prompt that training built.
std::vector<int32_t> PromptIds(const Tokenizer& tok, const std::string& prompt_text);
// The prompt of `statement` under `tmpl` (RenderPrompt, then the above).
std::vector<int32_t> PromptIds(const Tokenizer& tok, const PromptTemplate& tmpl, const std::string& statement);

// Tokenises prompt (PromptIds) and target separately (so the boundary is
// exact) and adds EOS. If longer than max_len the target is cut
// from its end; a prompt that leaves no room for one target token is an error
// naming the example.
TokenizedExample Tokenize(const Tokenizer& tok, const RenderedExample& rendered, int64_t index, int64_t max_len);

struct Batch {
  int64_t rows = 0;
  int64_t cols = 0;                    // Sequence length of every row.
  std::vector<int32_t> input_ids;      // rows*cols, row-major; padding = pad id.
  std::vector<int32_t> labels;         // rows*cols, shifted, kIgnoreIndex where unsupervised.
  std::vector<int32_t> position_ids;   // rows*cols.
  std::vector<int32_t> segment_ids;    // rows*cols, 0 = padding.
  std::vector<int64_t> example_index;  // Examples in this batch, in order.
  int64_t supervised_tokens = 0;       // Count of labels != kIgnoreIndex.
  int64_t real_tokens = 0;             // Count of non-padding positions.
};

// One example per row, right-padded to the longest (cols <= max_len).
Batch CollatePadded(const std::vector<TokenizedExample>& examples, int32_t pad_id);

// Greedy packing in order: examples are appended to the current row while they
// fit in max_len, else a new row starts. Rows are right-padded to the longest
// row. Each example keeps its own segment id and restarts its positions.
Batch CollatePacked(const std::vector<TokenizedExample>& examples, int32_t pad_id, int64_t max_len);

}  // namespace dfar
