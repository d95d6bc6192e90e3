// bench_ckpt: checkpoint save/load throughput of SmolLM2-135M full weights +
// AdamW state on N ranks (run with mpirun -np 2), against baselines that
// write and read the same bytes in the same run.
//
// State: the real trainer layout. The GGUF model's parameters become one
// FlatParameters buffer, AdamW holds ZeRO-1 shards, and CollectStateChunks
// (what Trainer::SaveCheckpoint calls) cuts this rank's chunks: params,
// exp_avg and exp_avg_sq, fp32, each rank about a half of 3 x 135M x 4 B.
//   dfar save  : CollectStateChunks + CheckpointWriter::Save (HDF5 shards,
//                CRC32C, fsync, barrier, index, rename); time = slowest rank.
//   dd         : every rank at once: dd bs=4M conv=fsync copying its own
//                shard file (just written, so read from the page cache) to a
//                new file: the same bytes at the disk's sequential rate.
//   torch::save: the same tensors per rank into one file, then fsync.
//   dfar load  : CheckpointReader + RestoreState (the --resume path: every
//                parameter plus this rank's optimizer shard, hyperslab reads,
//                CRC32C checked) vs dd of the rank's dd file to /dev/null and
//                torch::load of its file. Reads come from the page cache
//                for all three (the files were just written).
//   async      : CheckpointWriter with async: how long Save() blocks the
//                training thread, vs the synchronous save.
// GB/s are per rank. Correctness: verify finds no problem, and the loaded
// parameters and optimizer state equal what was saved, bit for bit.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "dfar/ckpt/checkpoint.h"
#include "dfar/model/pretrained.h"
#include "dfar/train/flat_params.h"
#include "dfar/train/grad_sync.h"
#include "dfar/train/optimizer.h"
#include "harness.h"
#include "torch_meta.h"
#include "train/train_state.h"

namespace {

namespace fs = std::filesystem;
using dfar::bench::Cell;
using dfar::bench::Now;
using dfar::bench::Report;

constexpr const char* kUsage =
    "bench_ckpt: sharded HDF5 checkpoint save/load of SmolLM2-135M weights + AdamW state vs dd and torch::save\n"
    "usage: mpirun -np N bench_ckpt [--json FILE] [--quick] [--model PATH.gguf] [--dir DIR] [--reps 2]";

struct State {
  dfar::PretrainedModel model;
  std::unique_ptr<dfar::FlatParameters> flat;
  std::unique_ptr<dfar::GradientSync> sync;
  std::unique_ptr<dfar::AdamW> optim;
};

State BuildState(const std::string& path, dfar::Communicator& comm, bool quick) {
  State s;
  s.model = dfar::LoadPretrained(path, /*with_tokenizer=*/false);
  std::vector<std::pair<std::string, torch::Tensor>> named;
  std::vector<torch::Tensor> tensors;
  for (const auto& p : s.model.decoder->named_parameters()) {
    if (quick && named.size() >= 24) p.value().set_requires_grad(false);
    if (!p.value().requires_grad()) continue;
    named.emplace_back(p.key(), p.value());
    tensors.push_back(p.value());
  }
  s.flat = std::make_unique<dfar::FlatParameters>(named, dfar::FlatLayout{comm.size(), comm.rank(), 32.0, /*zero=*/1});
  s.sync = std::make_unique<dfar::GradientSync>(*s.flat, comm, tensors);
  s.optim = std::make_unique<dfar::AdamW>(*s.flat, dfar::AdamWOptions{});
  // Optimizer moments shaped like real ones (not zeros, which would hide nothing but look odd).
  torch::NoGradGuard guard;
  s.optim->exp_avg().normal_(0, 1e-3);
  s.optim->exp_avg_sq().uniform_(0, 1e-6);
  return s;
}

double MaxOverRanks(dfar::Communicator& comm, double secs) {
  comm.AllReduce(&secs, 1, dfar::DType::kFloat64, dfar::ReduceOp::kMax);
  return secs;
}

template <typename Fn>
double Timed(dfar::Communicator& comm, Fn fn) {
  comm.Barrier();
  const double t0 = Now();
  fn();
  return MaxOverRanks(comm, Now() - t0);
}

void Run(const std::string& command) {
  if (std::system(command.c_str()) != 0) throw std::runtime_error("bench_ckpt: failed: " + command);
}

void FsyncFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

dfar::SaveRequest MakeRequest(State& s, dfar::Communicator& comm, int64_t step) {
  dfar::SaveRequest req;
  req.step = step;
  req.meta = {{"bench", "ckpt"}};
  req.chunks = dfar::CollectStateChunks(*s.flat, *s.optim, 1, comm.rank(), comm.size());
  return req;
}

// Restores into zeroed buffers and compares with the saved values.
bool LoadMatches(State& s, const std::string& dir, double* secs) {
  const auto params = s.flat->data().clone(), m = s.optim->exp_avg().clone(), v = s.optim->exp_avg_sq().clone();
  {
    torch::NoGradGuard guard;
    s.flat->data().zero_();
    s.optim->exp_avg().zero_();
    s.optim->exp_avg_sq().zero_();
  }
  const double t0 = Now();
  const auto reader = dfar::CheckpointReader::Open(dir);
  dfar::RestoreState(reader, *s.flat, *s.optim);
  *secs = Now() - t0;
  return torch::equal(params, s.flat->data()) && torch::equal(m, s.optim->exp_avg()) &&
         torch::equal(v, s.optim->exp_avg_sq());
}

bool AllRanks(dfar::Communicator& comm, bool ok) {
  int32_t bad = ok ? 0 : 1;
  comm.AllReduce(&bad, 1, dfar::DType::kInt32, dfar::ReduceOp::kMax);
  return bad == 0;
}

}  // namespace

int main(int argc, char** argv) {
  const auto args = dfar::bench::ParseArgs(argc, argv, kUsage);
  auto comm = dfar::MakeHostCommunicator();
  Report report("ckpt", args, comm->rank(), comm->size());
  dfar::bench::AddTorchMeta(report);
  const std::string model = args.Get("model", ".cache/models/smollm2-135m-instruct.gguf");
  const fs::path dir = args.Get("dir", "/tmp/dfar-bench-ckpt");
  const int reps = static_cast<int>(args.GetInt("reps", args.quick ? 1 : 2));
  report.Meta("model", model);
  report.Meta("dir", dir.string());
  report.Meta("layout", "ZeRO-1 shards: param/, optim.exp_avg/, optim.exp_avg_sq/ (fp32)");
  if (comm->rank() == 0) fs::remove_all(dir);
  comm->Barrier();
  fs::create_directories(dir);

  State s = BuildState(model, *comm, args.quick);
  const fs::path root = dir / "checkpoints";
  const std::string rank_tag = "rank" + std::to_string(comm->rank());
  const fs::path dd_file = dir / ("dd-" + rank_tag), torch_file = dir / ("torch-" + rank_tag + ".pt");

  // --- save ---------------------------------------------------------------
  dfar::CheckpointWriter writer(root.string(), *comm, dfar::SaveOptions{/*keep_last=*/1, false});
  std::vector<double> t_save, t_dd, t_torch;
  std::string last_dir;
  for (int r = 0; r < reps; ++r) {
    t_save.push_back(Timed(*comm, [&] { last_dir = writer.Save(MakeRequest(s, *comm, r + 1)); }));
    char shard[64];
    std::snprintf(shard, sizeof(shard), "shard-%05d-of-%05d.h5", comm->rank(), comm->size());
    const std::string src = (fs::path(last_dir) / shard).string();
    t_dd.push_back(
        Timed(*comm, [&] { Run("dd if=" + src + " of=" + dd_file.string() + " bs=4M conv=fsync status=none"); }));
    t_torch.push_back(Timed(*comm, [&] {
      auto req = MakeRequest(s, *comm, r + 1);  // The same snapshot copy dfar makes.
      std::vector<torch::Tensor> tensors;
      for (auto& c : req.chunks)
        tensors.push_back(torch::from_blob(c.bytes.data(), {static_cast<int64_t>(c.bytes.size()) / 4}, torch::kFloat));
      torch::save(tensors, torch_file.string());
      FsyncFile(torch_file.string());
    }));
  }
  const bool verified = AllRanks(*comm, comm->rank() != 0 || dfar::VerifyCheckpoint(last_dir).empty());

  // --- load ---------------------------------------------------------------
  std::vector<double> t_load, t_ddr, t_tload;
  bool loaded_equal = true;
  for (int r = 0; r < reps; ++r) {
    double secs = 0;
    comm->Barrier();
    loaded_equal = LoadMatches(s, last_dir, &secs) && loaded_equal;
    t_load.push_back(MaxOverRanks(*comm, secs));
    t_ddr.push_back(Timed(*comm, [&] { Run("dd if=" + dd_file.string() + " of=/dev/null bs=4M status=none"); }));
    t_tload.push_back(Timed(*comm, [&] {
      std::vector<torch::Tensor> tensors;
      torch::load(tensors, torch_file.string());
    }));
  }
  loaded_equal = AllRanks(*comm, loaded_equal);
  // What RestoreState reads on this rank: every parameter + its optimizer shard.
  const double read_bytes = static_cast<double>(s.flat->logical_numel()) * 4 + 2.0 * s.optim->exp_avg().numel() * 4;

  // --- async --------------------------------------------------------------
  dfar::CheckpointWriter async_writer((dir / "async").string(), *comm, dfar::SaveOptions{1, true});
  std::vector<double> t_block;
  std::string async_dir;
  for (int r = 0; r < reps; ++r) {
    async_dir = async_writer.Save(MakeRequest(s, *comm, r + 1));
    t_block.push_back(MaxOverRanks(*comm, async_writer.last_blocking_seconds()));
  }
  async_writer.Wait();
  const bool async_ok = AllRanks(*comm, comm->rank() != 0 || dfar::VerifyCheckpoint(async_dir).empty());

  const double gb = static_cast<double>(fs::file_size(dd_file)) / 1e9;  // This rank's shard file.
  const double save = dfar::bench::Median(t_save), load = dfar::bench::Median(t_load);
  const double dd = dfar::bench::Median(t_dd), ddr = dfar::bench::Median(t_ddr);
  report.Begin({{"op", 12, 0},
                {"method", 12, 0},
                {"GB_per_rank", 11, 3},
                {"seconds", 9, 3},
                {"GB/s/rank", 10, 3},
                {"vs_dd", 7, 3}});
  const auto row = [&](const char* op, const char* method, double g, double t, double base, bool ok) {
    report.Row({Cell{std::string(op)}, Cell{std::string(method)}, Cell{g}, Cell{t}, Cell{g / t}, Cell{base / t}}, ok);
  };
  row("save", "dfar", gb, save, dd, verified);
  row("save", "dd", gb, dd, dd, true);
  row("save", "torch::save", gb, dfar::bench::Median(t_torch), dd, true);
  row("load", "dfar", read_bytes / 1e9, load, ddr * read_bytes / (gb * 1e9), loaded_equal);
  row("load", "dd", gb, ddr, ddr, true);
  row("load", "torch::load", gb, dfar::bench::Median(t_tload), ddr, true);
  row("save-async", "dfar", gb, dfar::bench::Median(t_block), dd, async_ok);
  report.Note("vs_dd = dd time / method time for the same bytes (load: dd time scaled to the bytes dfar reads)");
  report.Note("save-async seconds = time Save() blocked the caller (snapshot + hand-off); writing continues behind");
  report.Summary("save_vs_dd", dd / save);
  report.Summary("save_gbps_per_rank", gb / save);
  report.Summary("load_gbps_per_rank", read_bytes / 1e9 / load);
  report.Summary("async_blocking_fraction", dfar::bench::Median(t_block) / save);
  comm->Barrier();
  if (comm->rank() == 0) fs::remove_all(dir);
  return report.Finish();
}
