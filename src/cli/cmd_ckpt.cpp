// `dfar ckpt inspect|verify|export-hf`.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "dfar/ckpt/checkpoint.h"
#include "dfar/core/error.h"
#include "dfar/model/export.h"
#include "dfar/train/trained_model.h"

namespace dfar::cli {
namespace {

struct CkptFlags {
  std::string dir;
  std::string out;
};

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void RunInspect(const CkptFlags& f) {
  const CheckpointReader r = CheckpointReader::Open(f.dir);
  int64_t total = 0;
  std::printf("checkpoint %s\nstep %lld, written by %d rank(s)\n", f.dir.c_str(), static_cast<long long>(r.step()),
              r.world_size());
  std::printf("%-56s %-18s %-8s %12s %6s\n", "tensor", "shape", "dtype", "bytes", "chunks");
  for (const auto& [name, t] : r.tensors()) {
    const int64_t bytes = t.numel() * static_cast<int64_t>(DTypeSize(t.dtype));
    total += bytes;
    std::printf("%-56s %-18s %-8s %12lld %6zu\n", name.c_str(), ShapeText(t.global_shape).c_str(), DTypeName(t.dtype),
                static_cast<long long>(bytes), t.chunks.size());
  }
  std::printf("%zu tensors, %.3f MB\n", r.tensors().size(), static_cast<double>(total) / 1e6);
}

void RunVerify(const CkptFlags& f) {
  const auto problems = VerifyCheckpoint(f.dir);
  for (const auto& p : problems) std::fprintf(stderr, "corrupt: %s\n", p.c_str());
  DFAR_CHECK(problems.empty(), f.dir, ": ", problems.size(), " problem(s) found");
  std::printf("%s: every shard present, every checksum matches\n", f.dir.c_str());
}

void RunExport(const CkptFlags& f) {
  Config config;
  PretrainedModel model = LoadTrainedModel(f.dir, &config);
  ExportHfModel(model, f.out);
  std::printf("exported %s (LoRA merged) to %s\n", f.dir.c_str(), f.out.c_str());
}

}  // namespace

// A run dir or its checkpoints/ dir: the one latest-checkpoint rule
// (FindLatestCheckpoint), for launchers and sbatch scripts.
void RunLatest(const CkptFlags& f) {
  const std::string under = std::filesystem::is_directory(f.dir + "/checkpoints") ? f.dir + "/checkpoints" : f.dir;
  const std::string latest = FindLatestCheckpoint(under);
  DFAR_CHECK(!latest.empty(), "no complete checkpoint under ", under);
  std::printf("%s\n", latest.c_str());
}

void RegisterCkptCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("ckpt", "inspect, verify or export a sharded checkpoint (a step-N directory)");
  cmd->require_subcommand(1);
  auto flags = std::make_shared<CkptFlags>();
  auto* inspect = cmd->add_subcommand("inspect", "tensors, shapes, dtypes, bytes, world size and step");
  inspect->add_option("dir", flags->dir, "checkpoint directory")->required();
  inspect->callback([flags] { RunInspect(*flags); });
  auto* verify = cmd->add_subcommand("verify", "re-check every shard and checksum; non-zero exit on corruption");
  verify->add_option("dir", flags->dir, "checkpoint directory")->required();
  verify->callback([flags] { RunVerify(*flags); });
  auto* latest = cmd->add_subcommand("latest", "print the newest complete checkpoint of a run dir; exit 1 if none");
  latest->add_option("dir", flags->dir, "run directory (or its checkpoints/ directory)")->required();
  latest->callback([flags] { RunLatest(*flags); });
  auto* exp = cmd->add_subcommand("export-hf", "write a Hugging Face model (LoRA merged) loadable by transformers");
  exp->add_option("dir", flags->dir, "checkpoint directory")->required();
  exp->add_option("out", flags->out, "output directory (must not exist)")->required();
  exp->callback([flags] { RunExport(*flags); });
}

}  // namespace dfar::cli
