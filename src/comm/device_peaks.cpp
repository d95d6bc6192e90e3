// Dense bf16 peaks of known GPUs, by the name cudaGetDeviceProperties gives;
// see PeakBf16FlopsForDeviceName in nccl_communicator.h. CUDA-free, so that
// it is compiled (and tested) in every build, with or without NCCL.
//
// Why whole words, longest key first: the names nest. "NVIDIA L40S" holds
// "L40", which holds "L4"; "NVIDIA H100 PCIe" holds "H100"; "NVIDIA GH200
// 480GB" holds "H200". A key matches only where it is not part of a longer
// word (so "L4" cannot match "L40"), and the most specific key is tried
// first (so "H100 PCIe" wins over "H100"), whatever the table's order.
#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "dfar/comm/nccl_communicator.h"

namespace dfar {
namespace {

struct Peak {
  const char* key;  // Matched case-insensitively as whole words.
  double tflops;    // Dense (no 2:4 sparsity) bf16 tensor-core TFLOP/s.
};

// From the vendors' data sheets. Most print the bf16 tensor-core figure "with
// sparsity" (2:4 structured) only; the dense peak is half of it.
constexpr Peak kPeaks[] = {
    {"H100 PCIe", 756.5},  // Sheet: 1,513 with sparsity.
    {"H100 NVL", 835.5},   // Sheet: 1,671 with sparsity, per GPU.
    {"H100", 989.4},       // SXM ("NVIDIA H100 80GB HBM3"): 1,979 with sparsity; Hopper whitepaper: 989.4 dense.
    {"H200 NVL", 835.5},   // NVIDIA H200 page: 1,671 with sparsity.
    {"H200", 989.4},       // Sheet: 1,979 with sparsity (the H100 SXM's SMs and clocks).
    {"GH200", 989.4},      // Sheet: 1,979 with sparsity.
    {"B200", 2250},        // Sheet: 4,500 with sparsity.
    {"A100", 312},         // Dense on the sheet; SXM and PCIe alike.
    {"L40S", 362.05},      // Dense on the sheet (733 with sparsity).
    {"L40", 181.05},       // Dense on the sheet (362.1 with sparsity).
    {"L4", 121},           // Sheet: 242 with sparsity.
    {"A10G", 70},          // AWS's A10 variant, no public NVIDIA sheet: dfar's earlier figure, unverified.
    {"RTX A6000", 154.8},  // Dense on the sheet (309.7 with sparsity).
};

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool IsWordChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0;
}

// True if `key` occurs in `name` with no letter or digit right before or after it.
bool ContainsWord(const std::string& name, const std::string& key) {
  for (size_t pos = name.find(key); pos != std::string::npos; pos = name.find(key, pos + 1)) {
    const bool starts = pos == 0 || !IsWordChar(name[pos - 1]);
    const size_t end = pos + key.size();
    const bool ends = end == name.size() || !IsWordChar(name[end]);
    if (starts && ends) return true;
  }
  return false;
}

}  // namespace

double PeakBf16FlopsForDeviceName(const std::string& name) {
  std::vector<Peak> by_length(std::begin(kPeaks), std::end(kPeaks));
  std::stable_sort(by_length.begin(), by_length.end(), [](const Peak& a, const Peak& b) {
    return std::char_traits<char>::length(a.key) > std::char_traits<char>::length(b.key);
  });
  const std::string lower = Lower(name);
  for (const Peak& p : by_length) {
    if (ContainsWord(lower, Lower(p.key))) return p.tflops * 1e12;
  }
  return 0;
}

}  // namespace dfar
