#include "dfar/core/world.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>

#include "dfar/core/error.h"

namespace dfar {
namespace {

// Sets environment variables for one test and restores them afterwards.
class EnvGuard {
 public:
  ~EnvGuard() {
    for (const auto& [name, value] : saved_) {
      if (value.first) {
        setenv(name.c_str(), value.second.c_str(), 1);
      } else {
        unsetenv(name.c_str());
      }
    }
  }
  void Set(const std::string& name, const char* value) {
    if (!saved_.count(name)) {
      const char* old = std::getenv(name.c_str());
      saved_[name] = {old != nullptr, old ? old : ""};
    }
    if (value) {
      setenv(name.c_str(), value, 1);
    } else {
      unsetenv(name.c_str());
    }
  }
  void ClearLaunchers() {
    for (const char* n : {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                          "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
                          "SLURM_NTASKS_PER_NODE", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"})
      Set(n, nullptr);
  }

 private:
  std::map<std::string, std::pair<bool, std::string>> saved_;
};

TEST(WorldTest, NoLauncherIsSingleProcess) {
  EnvGuard env;
  env.ClearLaunchers();
  const World w = DiscoverWorld();
  EXPECT_EQ(w.rank, 0);
  EXPECT_EQ(w.size, 1);
  EXPECT_EQ(w.device, "cpu");
  EXPECT_EQ(w.launcher, "none");
}

TEST(WorldTest, OpenMpiRankAndSize) {
  EnvGuard env;
  env.ClearLaunchers();
  env.Set("OMPI_COMM_WORLD_RANK", "3");
  env.Set("OMPI_COMM_WORLD_SIZE", "8");
  env.Set("OMPI_COMM_WORLD_LOCAL_RANK", "1");
  const World w = DiscoverWorld();
  EXPECT_EQ(w.rank, 3);
  EXPECT_EQ(w.size, 8);
  EXPECT_EQ(w.local_rank, 1);
  EXPECT_EQ(w.device, "cpu");  // Placement, not discovery, decides the device.
  EXPECT_NE(w.TopologyLine().find("rank=3/8"), std::string::npos);
}

TEST(WorldTest, SlurmAndTorchrun) {
  EnvGuard env;
  env.ClearLaunchers();
  env.Set("SLURM_PROCID", "5");
  env.Set("SLURM_NTASKS", "16");
  env.Set("SLURM_LOCALID", "1");
  EXPECT_EQ(DiscoverWorld().launcher, "slurm");
  env.ClearLaunchers();
  env.Set("RANK", "1");
  env.Set("WORLD_SIZE", "2");
  EXPECT_EQ(DiscoverWorld().launcher, "torchrun");
}

TEST(WorldTest, BadValuesNameTheVariable) {
  EnvGuard env;
  env.ClearLaunchers();
  env.Set("RANK", "x1");
  env.Set("WORLD_SIZE", "2");
  try {
    DiscoverWorld();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("RANK"), std::string::npos);
  }
  env.Set("RANK", "4");
  EXPECT_THROW(DiscoverWorld(), Error);
}

}  // namespace
}  // namespace dfar
