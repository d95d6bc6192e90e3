#include "dfar/train/schedule.h"

#include <gtest/gtest.h>

#include "dfar/core/error.h"

namespace dfar {
namespace {

// The paper's schedule: lr 2e-4, constant after a 3% warmup. With 100 steps,
// warmup is ceil(3) = 3 steps and step s (0-based) runs at 2e-4 * s / 3.
TEST(ScheduleTest, ConstantWithWarmupAsTheFirstStepsOfThePaper) {
  const LrSchedule s = MakeSchedule("constant", 2e-4, 100, 0.03);
  EXPECT_EQ(s.warmup_steps, 3);
  EXPECT_DOUBLE_EQ(s.At(0), 0.0);
  EXPECT_DOUBLE_EQ(s.At(1), 2e-4 / 3);
  EXPECT_DOUBLE_EQ(s.At(2), 2e-4 * 2 / 3);
  EXPECT_DOUBLE_EQ(s.At(3), 2e-4);
  EXPECT_DOUBLE_EQ(s.At(99), 2e-4);
}

TEST(ScheduleTest, LinearDecaysToZero) {
  const LrSchedule s = MakeSchedule("linear", 1.0, 10, 0.2);
  EXPECT_EQ(s.warmup_steps, 2);
  EXPECT_DOUBLE_EQ(s.At(1), 0.5);
  EXPECT_DOUBLE_EQ(s.At(2), 1.0);
  EXPECT_DOUBLE_EQ(s.At(6), 0.5);
  EXPECT_DOUBLE_EQ(s.At(10), 0.0);
}

TEST(ScheduleTest, CosineHalfwayIsHalf) {
  const LrSchedule s = MakeSchedule("cosine", 1.0, 12, 0.0);
  EXPECT_DOUBLE_EQ(s.At(0), 1.0);
  EXPECT_NEAR(s.At(6), 0.5, 1e-12);
  EXPECT_NEAR(s.At(12), 0.0, 1e-12);
}

TEST(ScheduleTest, RejectsUnknownKindsAndEmptyRuns) {
  EXPECT_THROW(MakeSchedule("exponential", 1.0, 10, 0.0), Error);
  EXPECT_THROW(MakeSchedule("constant", 1.0, 0, 0.0), Error);
}

}  // namespace
}  // namespace dfar
