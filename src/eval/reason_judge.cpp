// Why a bank of human reasons and not the model's own verdict: the question
// is whether the *reason* argues for the gold label. A reason that reads
// like the human reasons given for unethical statements argues "unethical",
// whatever verdict word precedes it.
#include "dfar/eval/reason_judge.h"

#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "dfar/core/error.h"
#include "dfar/core/file_util.h"
#include "dfar/core/logging.h"
#include "dfar/data/dataset.h"

namespace dfar {
namespace {

namespace fs = std::filesystem;

constexpr char kBankMagic[8] = {'D', 'F', 'A', 'R', 'B', 'N', 'K', '1'};

// Identifies the bank's content as read: path, size, mtime, mapping and k-independent.
std::string BankKey(const std::string& path, const DataConfig& spec, const std::string& encoder_dir) {
  struct stat st {};
  DFAR_CHECK(::stat(path.c_str(), &st) == 0, "eval.mar_bank '", path, "': cannot stat: ", std::strerror(errno));
  std::string key = fs::absolute(path).string() + "|" + std::to_string(st.st_size) + "|" +
                    std::to_string(static_cast<long long>(st.st_mtime)) + "|" + spec.text_column + "|" +
                    spec.reason_column + "|" + spec.label_column + "|" + fs::absolute(encoder_dir).string();
  return std::to_string(std::hash<std::string>{}(key));
}

struct Bank {
  torch::Tensor embeddings;
  std::vector<int> labels;
};

std::string SerializeBank(const Bank& b) {
  const int64_t n = b.embeddings.size(0), d = b.embeddings.size(1);
  std::string out(kBankMagic, sizeof(kBankMagic));
  out.append(reinterpret_cast<const char*>(&n), 8);
  out.append(reinterpret_cast<const char*>(&d), 8);
  for (int label : b.labels) out.push_back(static_cast<char>(label));
  const auto c = b.embeddings.contiguous();
  out.append(reinterpret_cast<const char*>(c.data_ptr<float>()), static_cast<size_t>(n * d) * 4);
  return out;
}

// The cached bank, or an undefined tensor when the file is absent or does not fit.
Bank ReadCachedBank(const std::string& path, int64_t n_expected) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 24 || std::memcmp(bytes.data(), kBankMagic, 8) != 0) return {};
  int64_t n = 0, d = 0;
  std::memcpy(&n, bytes.data() + 8, 8);
  std::memcpy(&d, bytes.data() + 16, 8);
  if (n != n_expected || d <= 0 || d > 65536 || bytes.size() != 24 + static_cast<size_t>(n) * (1 + 4 * d)) return {};
  Bank b;
  for (int64_t i = 0; i < n; ++i) b.labels.push_back(static_cast<int>(bytes[24 + static_cast<size_t>(i)]));
  b.embeddings = torch::empty({n, d}, torch::kFloat);
  std::memcpy(b.embeddings.data_ptr<float>(), bytes.data() + 24 + n, static_cast<size_t>(n * d) * 4);
  return b;
}

// Each rank embeds a contiguous shard of the reasons; one all-gather joins them.
torch::Tensor EmbedSharded(const SentenceEncoder& encoder, const std::vector<std::string>& texts, Communicator& comm) {
  const int64_t n = static_cast<int64_t>(texts.size());
  const int64_t per = (n + comm.size() - 1) / comm.size();
  const int64_t begin = std::min(n, per * comm.rank()), end = std::min(n, begin + per);
  const std::vector<std::string> mine(texts.begin() + begin, texts.begin() + end);
  torch::Tensor part = mine.empty() ? torch::empty({0, encoder.dim()}, torch::kFloat) : encoder.Encode(mine);
  const std::string bytes(reinterpret_cast<const char*>(part.data_ptr<float>()), static_cast<size_t>(part.numel()) * 4);
  std::vector<torch::Tensor> parts;
  for (const std::string& p : comm.AllGatherBytes(bytes)) {
    auto t = torch::empty({static_cast<int64_t>(p.size() / 4 / encoder.dim()), encoder.dim()}, torch::kFloat);
    std::memcpy(t.data_ptr<float>(), p.data(), p.size());
    parts.push_back(t);
  }
  return torch::cat(parts, 0);
}

Bank BuildBank(const Config& config, const SentenceEncoder& encoder, Communicator& comm) {
  const std::string path = config.eval.mar_bank.empty() ? config.data.train : config.eval.mar_bank;
  DataConfig spec = config.data;
  spec.limit = 0;
  std::vector<const Example*> with_reason;
  const std::vector<Example> examples = LoadExamples(path, spec);
  for (const Example& ex : examples)
    if (!ex.reason.empty()) with_reason.push_back(&ex);
  std::vector<std::string> reasons;
  Bank bank;
  for (size_t i : SubsetRows(with_reason.size(), config.eval.mar_bank_limit, "stride")) {
    reasons.push_back(with_reason[i]->reason);
    bank.labels.push_back(with_reason[i]->label);
  }
  DFAR_CHECK(!reasons.empty(), "eval.mar_bank '", path, "' has no labelled reasons (column '", spec.reason_column,
             "')");
  const std::string cache = (fs::path(config.eval.encoder) / ("bank-" + BankKey(path, spec, config.eval.encoder) + "-" +
                                                              std::to_string(reasons.size()) + ".bin"))
                                .string();
  Bank cached = ReadCachedBank(cache, static_cast<int64_t>(reasons.size()));
  if (cached.embeddings.defined() && cached.labels == bank.labels) return cached;
  LogInfo("eval: embedding {} human reasons of {} for the automatic MAR (cached in {})", reasons.size(), path, cache);
  bank.embeddings = EmbedSharded(encoder, reasons, comm);
  if (comm.rank() == 0) {
    const std::string error = TryWriteFileAtomic(cache, SerializeBank(bank));
    if (!error.empty()) LogWarn("eval: could not cache the reason bank: {}", error);
  }
  return bank;
}

}  // namespace

std::vector<int> MajorityOfNearest(const torch::Tensor& queries, const torch::Tensor& bank,
                                   const std::vector<int>& bank_labels, int64_t k) {
  DFAR_CHECK(bank.size(0) == static_cast<int64_t>(bank_labels.size()) && bank.size(0) > 0,
             "reason bank: ", bank.size(0), " embeddings for ", bank_labels.size(), " labels");
  const int64_t kk = std::min<int64_t>(k, bank.size(0));
  const torch::Tensor top_t = std::get<1>(torch::matmul(queries, bank.t()).topk(kk, 1)).to(torch::kCPU).contiguous();
  const auto top = top_t.accessor<int64_t, 2>();
  std::vector<int> out;
  for (int64_t i = 0; i < queries.size(0); ++i) {
    int votes[2] = {0, 0};
    for (int64_t j = 0; j < kk; ++j) ++votes[bank_labels[static_cast<size_t>(top[i][j])]];
    const int nearest = bank_labels[static_cast<size_t>(top[i][0])];
    out.push_back(votes[0] == votes[1] ? nearest : (votes[1] > votes[0] ? 1 : 0));
  }
  return out;
}

ReasonJudge::ReasonJudge(SentenceEncoder encoder, torch::Tensor bank, std::vector<int> bank_labels, int64_t k)
    : encoder_(std::move(encoder)), bank_(std::move(bank)), bank_labels_(std::move(bank_labels)), k_(k) {}

std::unique_ptr<ReasonJudge> ReasonJudge::Make(const Config& config, bool data_has_reasons, Communicator& comm) {
  if (config.eval.encoder.empty() || config.eval.mode != "generate" || !data_has_reasons) return nullptr;
  DFAR_CHECK(fs::exists(fs::path(config.eval.encoder) / "model.safetensors"), "eval.encoder '", config.eval.encoder,
             "' holds no sentence encoder (run scripts/fetch_encoder.sh or make deps; eval.encoder= turns reason "
             "judging off)");
  SentenceEncoder encoder = SentenceEncoder::Load(config.eval.encoder);
  Bank bank = BuildBank(config, encoder, comm);
  return std::make_unique<ReasonJudge>(std::move(encoder), bank.embeddings, bank.labels, config.eval.mar_k);
}

std::vector<int> ReasonJudge::NearestLabels(const torch::Tensor& embeddings) const {
  return MajorityOfNearest(embeddings, bank_, bank_labels_, k_);
}

void ReasonJudge::Judge(std::vector<ExampleResult>& results) const {
  if (results.empty()) return;
  std::vector<std::string> generated, human;
  for (const ExampleResult& r : results) {
    generated.push_back(r.reason);
    human.push_back(r.gold_reason);
  }
  const torch::Tensor g = encoder_.Encode(generated), h = encoder_.Encode(human);
  const std::vector<double> cosine = PairedCosine(g, h);
  const std::vector<int> g_labels = NearestLabels(g), h_labels = NearestLabels(h);
  for (size_t i = 0; i < results.size(); ++i) {
    ExampleResult& r = results[i];
    const bool empty = r.reason.empty();
    r.judged = true;
    r.similarity = empty ? 0.0 : cosine[i];
    r.reason_label = empty ? kUnparseable : g_labels[i];
    r.human_reason_label = h_labels[i];
  }
}

}  // namespace dfar
