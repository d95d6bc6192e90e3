// bench_allreduce: all-reduce bandwidth of dfar's Communicator against a raw
// MPI_Allreduce of the same buffer, in the same run (nccl-tests style).
//
// For each size (1 KB .. 256 MB, x4 steps, fp32 sum, in place) both paths
// run `iters` times after a warm-up; the time of one op is the slowest rank's
// mean. algbw = bytes / time; busbw = algbw * 2(n-1)/n, the nccl-tests
// all-reduce formula, which makes the figure comparable across rank counts.
// Correctness: before timing, each path reduces rank-dependent integers
// (exact in fp32) and every element is checked on every rank.
//
// Run: mpirun -np 2 bench_allreduce [--json FILE] [--quick] [--max-mb 256]
// The raw MPI calls are legal beside the Communicator: it initialises MPI as
// MPI_THREAD_SERIALIZED and no dfar collective is in flight while they run.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "dfar/comm/communicator.h"
#include "harness.h"

namespace {

using dfar::bench::Cell;
using dfar::bench::Report;

constexpr const char* kUsage =
    "bench_allreduce: dfar Communicator all-reduce vs raw MPI_Allreduce (fp32 sum, in place)\n"
    "usage: mpirun -np N bench_allreduce [--json FILE] [--quick] [--min-kb 1] [--max-mb 256]";

enum class Path { kDfar, kRaw };

void AllReduceOnce(Path path, dfar::Communicator& comm, std::vector<float>& buf) {
  if (path == Path::kDfar) {
    comm.AllReduce(buf.data(), buf.size(), dfar::DType::kFloat32, dfar::ReduceOp::kSum);
  } else {
    MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(buf.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  }
}

// Rank r holds (r+1)*(i%7+1); the sum is n(n+1)/2*(i%7+1) exactly.
bool CheckSum(Path path, dfar::Communicator& comm, std::vector<float>& buf) {
  const int n = comm.size();
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<float>((comm.rank() + 1) * (i % 7 + 1));
  AllReduceOnce(path, comm, buf);
  int bad = 0;
  for (size_t i = 0; i < buf.size() && !bad; ++i) bad = buf[i] != static_cast<float>(n * (n + 1) / 2 * (i % 7 + 1));
  comm.AllReduce(&bad, 1, dfar::DType::kInt32, dfar::ReduceOp::kMax);
  return bad == 0;
}

// Mean seconds per op, the slowest rank's. The buffer holds zeros so the
// repeated sums cannot overflow (the add costs the same).
double TimeOps(Path path, dfar::Communicator& comm, std::vector<float>& buf, int iters) {
  std::fill(buf.begin(), buf.end(), 0.0f);
  for (int w = 0; w < 2; ++w) AllReduceOnce(path, comm, buf);
  comm.Barrier();
  const double t0 = dfar::bench::Now();
  for (int i = 0; i < iters; ++i) AllReduceOnce(path, comm, buf);
  double secs = (dfar::bench::Now() - t0) / iters;
  comm.AllReduce(&secs, 1, dfar::DType::kFloat64, dfar::ReduceOp::kMax);
  return secs;
}

int ItersFor(size_t bytes, bool quick) {
  const double budget = quick ? 32e6 : 1e9;  // Bytes reduced per size and path.
  return static_cast<int>(std::clamp(budget / static_cast<double>(bytes), quick ? 2.0 : 5.0, quick ? 20.0 : 1000.0));
}

}  // namespace

int main(int argc, char** argv) {
  const auto args = dfar::bench::ParseArgs(argc, argv, kUsage);
  auto comm = dfar::MakeMpiCommunicator();
  Report report("allreduce", args, comm->rank(), comm->size());
  char version[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  MPI_Get_library_version(version, &len);
  std::string mpi(version, static_cast<size_t>(len));
  report.Meta("mpi", mpi.substr(0, mpi.find_first_of(",\n")));
  report.Meta("op", "fp32 sum, in place; time = slowest rank's mean");
  report.Begin({{"bytes", 11, 0},
                {"count", 10, 0},
                {"iters", 6, 0},
                {"dfar_us", 11, 1},
                {"dfar_algbw", 10, 3},
                {"dfar_busbw", 10, 3},
                {"mpi_us", 11, 1},
                {"mpi_algbw", 10, 3},
                {"mpi_busbw", 10, 3},
                {"dfar/mpi", 8, 3}});
  const int n = comm->size();
  const double bus = n > 1 ? 2.0 * (n - 1) / n : 1.0;
  const size_t min_bytes = static_cast<size_t>(args.GetInt("min-kb", 1)) << 10;
  const size_t max_bytes = static_cast<size_t>(args.GetInt("max-mb", args.quick ? 4 : 256)) << 20;
  double large_ratio = 0;
  for (size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
    std::vector<float> buf(bytes / sizeof(float));
    const bool ok = CheckSum(Path::kDfar, *comm, buf) && CheckSum(Path::kRaw, *comm, buf);
    const int iters = ItersFor(bytes, args.quick);
    const double t_dfar = TimeOps(Path::kDfar, *comm, buf, iters);
    const double t_raw = TimeOps(Path::kRaw, *comm, buf, iters);
    const double alg_dfar = bytes / t_dfar / 1e9, alg_raw = bytes / t_raw / 1e9;
    large_ratio = t_raw / t_dfar;
    report.Row({Cell{static_cast<int64_t>(bytes)}, Cell{static_cast<int64_t>(buf.size())}, Cell{int64_t{iters}},
                Cell{t_dfar * 1e6}, Cell{alg_dfar}, Cell{alg_dfar * bus}, Cell{t_raw * 1e6}, Cell{alg_raw},
                Cell{alg_raw * bus}, Cell{t_raw / t_dfar}},
               ok);
  }
  report.Note("algbw, busbw in GB/s; dfar/mpi = raw time / dfar time (1.0 = no overhead)");
  report.Summary("ratio_at_largest", large_ratio);
  return report.Finish();
}
