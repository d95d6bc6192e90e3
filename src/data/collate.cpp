#include "dfar/data/collate.h"

#include <algorithm>

#include "dfar/core/error.h"

namespace dfar {

std::vector<int32_t> PromptIds(const Tokenizer& tok, const std::string& prompt_text) {
  std::vector<int32_t> ids;
  if (tok.add_bos()) ids.push_back(tok.bos_id());
  const std::vector<int32_t> prompt = tok.Encode(prompt_text);
  ids.insert(ids.end(), prompt.begin(), prompt.end());
  return ids;
}

std::vector<int32_t> PromptIds(const Tokenizer& tok, const PromptTemplate& tmpl, const std::string& statement) {
  return PromptIds(tok, RenderPrompt(tmpl, statement));
}

TokenizedExample Tokenize(const Tokenizer& tok, const RenderedExample& rendered, int64_t index, int64_t max_len) {
  DFAR_CHECK(max_len > 0, "max_seq_len must be positive, got ", max_len);
  TokenizedExample out;
  out.index = index;
  // Prompt and target are encoded apart so that the supervision boundary is a
  // token boundary, whatever the tokenizer would merge across it.
  out.ids = PromptIds(tok, rendered.prompt);
  out.prompt_len = static_cast<int64_t>(out.ids.size());

  // SentencePiece prepends "▁" (a space) to every text it encodes alone, so a
  // target's own leading space would become a second one; byte-level BPE
  // needs the space to form " unethical" as one word.
  std::string_view target = rendered.target;
  if (tok.kind() == "sentencepiece" && !target.empty() && target.front() == ' ') target.remove_prefix(1);
  std::vector<int32_t> supervised = tok.Encode(target);
  if (tok.eos_id() >= 0) supervised.push_back(tok.eos_id());
  DFAR_CHECK(!supervised.empty(), "example ", index, ": the target encodes to no tokens");
  const int64_t room = max_len - out.prompt_len;
  DFAR_CHECK(room >= 1, "example ", index, ": its prompt takes ", out.prompt_len, " tokens, leaving no room for the ",
             "target within max_seq_len ", max_len, "; raise prompt.max_seq_len or shorten the template");
  // Cutting from the end keeps the verdict, which the targets put first. EOS
  // goes with the first cut: a truncated reason must not teach the model to stop.
  if (static_cast<int64_t>(supervised.size()) > room) {
    supervised.resize(room);
    out.truncated = true;
  }
  out.ids.insert(out.ids.end(), supervised.begin(), supervised.end());
  return out;
}

namespace {

Batch EmptyBatch(int64_t rows, int64_t cols, int32_t pad_id) {
  Batch batch;
  batch.rows = rows;
  batch.cols = cols;
  const size_t size = static_cast<size_t>(rows * cols);
  batch.input_ids.assign(size, pad_id);
  batch.labels.assign(size, kIgnoreIndex);
  batch.position_ids.assign(size, 0);
  batch.segment_ids.assign(size, 0);
  return batch;
}

// Writes one sample at flat offset `at`. Labels are shifted and stop at the
// sample's end, so the last token of a segment never predicts the next segment.
void WriteSample(const TokenizedExample& ex, int32_t segment, size_t at, Batch& batch) {
  const int64_t len = static_cast<int64_t>(ex.ids.size());
  for (int64_t t = 0; t < len; ++t) {
    const size_t i = at + static_cast<size_t>(t);
    batch.input_ids[i] = ex.ids[t];
    batch.position_ids[i] = static_cast<int32_t>(t);
    batch.segment_ids[i] = segment;
    const bool supervised = t + 1 < len && t + 1 >= ex.prompt_len;
    if (supervised) {
      batch.labels[i] = ex.ids[t + 1];
      ++batch.supervised_tokens;
    }
  }
  batch.real_tokens += len;
  batch.example_index.push_back(ex.index);
}

void CheckExample(const TokenizedExample& ex) {
  DFAR_CHECK(!ex.ids.empty() && ex.prompt_len >= 0 && ex.prompt_len <= static_cast<int64_t>(ex.ids.size()), "example ",
             ex.index, ": tokenized sample is malformed (", ex.ids.size(), " ids, prompt_len ", ex.prompt_len, ")");
}

}  // namespace

Batch CollatePadded(const std::vector<TokenizedExample>& examples, int32_t pad_id) {
  int64_t cols = 0;
  for (const TokenizedExample& ex : examples) {
    CheckExample(ex);
    cols = std::max<int64_t>(cols, static_cast<int64_t>(ex.ids.size()));
  }
  Batch batch = EmptyBatch(static_cast<int64_t>(examples.size()), cols, pad_id);
  for (size_t row = 0; row < examples.size(); ++row) {
    WriteSample(examples[row], 1, row * static_cast<size_t>(cols), batch);
  }
  return batch;
}

namespace {

// Greedy first-fit-in-order: returns, per row, the examples it holds.
std::vector<std::vector<size_t>> PlanRows(const std::vector<TokenizedExample>& examples, int64_t max_len) {
  std::vector<std::vector<size_t>> rows;
  int64_t used = 0;
  for (size_t i = 0; i < examples.size(); ++i) {
    const int64_t len = static_cast<int64_t>(examples[i].ids.size());
    DFAR_CHECK(len <= max_len, "example ", examples[i].index, " has ", len, " tokens, more than max_seq_len ", max_len,
               " allowed when packing");
    if (rows.empty() || used + len > max_len) {
      rows.emplace_back();
      used = 0;
    }
    rows.back().push_back(i);
    used += len;
  }
  return rows;
}

}  // namespace

Batch CollatePacked(const std::vector<TokenizedExample>& examples, int32_t pad_id, int64_t max_len) {
  DFAR_CHECK(max_len > 0, "max_seq_len must be positive, got ", max_len);
  for (const TokenizedExample& ex : examples) CheckExample(ex);
  const std::vector<std::vector<size_t>> rows = PlanRows(examples, max_len);
  int64_t cols = 0;
  for (const auto& row : rows) {
    int64_t used = 0;
    for (size_t i : row) used += static_cast<int64_t>(examples[i].ids.size());
    cols = std::max(cols, used);
  }
  Batch batch = EmptyBatch(static_cast<int64_t>(rows.size()), cols, pad_id);
  for (size_t r = 0; r < rows.size(); ++r) {
    size_t at = r * static_cast<size_t>(cols);
    int32_t segment = 1;
    for (size_t i : rows[r]) {
      WriteSample(examples[i], segment++, at, batch);
      at += examples[i].ids.size();
    }
  }
  return batch;
}

}  // namespace dfar
