#include "dfar/core/world.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <thread>

#include "dfar/core/error.h"

namespace dfar {
namespace {

// Returns true and sets *out if `name` is set; throws if set but not an int.
bool ReadIntEnv(const char* name, int* out) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return false;
  errno = 0;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  DFAR_CHECK(*end == '\0' && errno == 0 && value >= 0 && value < (1L << 30), "environment variable ", name, "='", text,
             "' is not a valid non-negative integer");
  *out = static_cast<int>(value);
  return true;
}

std::string HostName() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

bool FromOpenMpi(World* w) {
  if (!ReadIntEnv("OMPI_COMM_WORLD_RANK", &w->rank)) return false;
  DFAR_CHECK(ReadIntEnv("OMPI_COMM_WORLD_SIZE", &w->size),
             "OMPI_COMM_WORLD_RANK is set but OMPI_COMM_WORLD_SIZE is not");
  ReadIntEnv("OMPI_COMM_WORLD_LOCAL_RANK", &w->local_rank);
  if (!ReadIntEnv("OMPI_COMM_WORLD_LOCAL_SIZE", &w->local_size)) w->local_size = w->size;
  w->launcher = "openmpi";
  return true;
}

bool FromSlurm(World* w) {
  if (!ReadIntEnv("SLURM_PROCID", &w->rank)) return false;
  DFAR_CHECK(ReadIntEnv("SLURM_NTASKS", &w->size), "SLURM_PROCID is set but SLURM_NTASKS is not");
  ReadIntEnv("SLURM_LOCALID", &w->local_rank);
  if (!ReadIntEnv("SLURM_NTASKS_PER_NODE", &w->local_size)) w->local_size = w->size;
  w->launcher = "slurm";
  return true;
}

bool FromTorchrun(World* w) {
  if (!ReadIntEnv("RANK", &w->rank)) return false;
  DFAR_CHECK(ReadIntEnv("WORLD_SIZE", &w->size), "RANK is set but WORLD_SIZE is not");
  ReadIntEnv("LOCAL_RANK", &w->local_rank);
  if (!ReadIntEnv("LOCAL_WORLD_SIZE", &w->local_size)) w->local_size = w->size;
  w->launcher = "torchrun";
  return true;
}

int IntraOpThreads() {
  int threads = 0;
  if (ReadIntEnv("OMP_NUM_THREADS", &threads) && threads > 0) return threads;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

}  // namespace

std::string World::TopologyLine() const {
  return "host=" + host + " rank=" + std::to_string(rank) + "/" + std::to_string(size) +
         " local=" + std::to_string(local_rank) + "/" + std::to_string(local_size) + " device=" + device +
         " threads=" + std::to_string(threads) + " launcher=" + launcher;
}

World DiscoverWorld() {
  World w;
  if (!FromOpenMpi(&w) && !FromSlurm(&w)) FromTorchrun(&w);
  DFAR_CHECK(w.size >= 1, "world size must be >= 1 (", w.launcher, " environment)");
  DFAR_CHECK(w.rank < w.size, "rank ", w.rank, " is outside world size ", w.size, " (", w.launcher, " environment)");
  w.host = HostName();
  w.threads = IntraOpThreads();
  return w;
}

}  // namespace dfar
