#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "dfar/ckpt/checkpoint.h"

namespace dfar {
namespace {

uint32_t Crc(const std::string& s) {
  return Crc32c(s.data(), s.size());
}

// Vectors from RFC 3720 (iSCSI), appendix B.4, and the usual check value.
TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc(""), 0u);
  EXPECT_EQ(Crc(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc(std::string(32, '\xFF')), 0x62A8AB43u);
  std::string ascending, descending;
  for (int i = 0; i < 32; ++i) {
    ascending += static_cast<char>(i);
    descending += static_cast<char>(31 - i);
  }
  EXPECT_EQ(Crc(ascending), 0x46DD794Eu);
  EXPECT_EQ(Crc(descending), 0x113FDB5Cu);
}

TEST(Crc32cTest, ExtendsAcrossSplitsAndAlignments) {
  std::vector<uint8_t> data(1000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 131 + 7);
  const uint32_t whole = Crc32c(data.data(), data.size());
  for (size_t split : {0, 1, 7, 8, 9, 63, 500, 999, 1000}) {
    const uint32_t first = Crc32c(data.data(), split);
    EXPECT_EQ(Crc32c(data.data() + split, data.size() - split, first), whole) << "split at " << split;
  }
  // The same bytes at every misalignment give the same CRC.
  std::vector<uint8_t> shifted(data.size() + 8);
  for (size_t offset = 0; offset < 8; ++offset) {
    std::memcpy(shifted.data() + offset, data.data(), data.size());
    EXPECT_EQ(Crc32c(shifted.data() + offset, data.size()), whole) << "offset " << offset;
  }
}

// The hardware path (where the CPU has it) and the table agree on every
// length and alignment, including the 1..7 byte tails.
TEST(Crc32cTest, HardwareAndPortableAgree) {
  std::vector<uint8_t> data(4099);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 197 + 3);
  EXPECT_EQ(Crc32cPortable("123456789", 9), 0xE3069283u);
  for (size_t offset = 0; offset < 9; ++offset) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{15}, size_t{4090}}) {
      EXPECT_EQ(Crc32c(data.data() + offset, n, 0x1234u), Crc32cPortable(data.data() + offset, n, 0x1234u))
          << "offset " << offset << " length " << n;
    }
  }
}

TEST(Crc32cTest, DetectsEverySingleBitFlip) {
  std::string s = "dfar checkpoint chunk";
  const uint32_t clean = Crc(s);
  for (size_t i = 0; i < s.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = s;
      flipped[i] = static_cast<char>(flipped[i] ^ (1 << bit));
      EXPECT_NE(Crc(flipped), clean);
    }
  }
}

}  // namespace
}  // namespace dfar
