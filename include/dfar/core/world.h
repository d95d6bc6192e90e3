// Where this process sits in the job: rank, size, local rank, device.
//
// Owns: reading the launcher's environment. Recognised, in order:
//   OpenMPI  OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE}
//   SLURM    SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID
//   torchrun RANK, WORLD_SIZE, LOCAL_RANK
// With none, the process is rank 0 of 1. The device is not decided here:
// the run setup sets `device` from the one device rule
// (dfar/runtime/placement.h), so the topology line shows what was chosen.
// Failure: throws dfar::Error naming the variable for a malformed value or a
// rank outside [0, size).
// Thread-safety: DiscoverWorld reads the environment; call it from main.
#pragma once

#include <string>

namespace dfar {

struct World {
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;
  std::string launcher = "none";  // "openmpi", "slurm", "torchrun", "none".
  std::string host;
  std::string device = "cpu";  // "cpu" or "cuda:K", as placed by the run setup.
  int threads = 1;             // Intra-op threads this rank uses.

  bool is_root() const { return rank == 0; }
  // "host=h rank=0/2 local=0/2 device=cpu threads=1 launcher=openmpi"
  std::string TopologyLine() const;
};

// Reads the environment.
World DiscoverWorld();

}  // namespace dfar
