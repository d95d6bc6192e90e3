// Configure-time check (cmake/Torch.cmake): prints the version that the
// linked libtorch was built as, read from the library itself
// (at::show_config() is compiled into libtorch_cpu), so that CMake can
// compare it with the version of the headers it found.
#include <ATen/Version.h>

#include <iostream>
#include <string>

int main() {
  const std::string config = at::show_config();
  const std::string key = "TORCH_VERSION=";
  const auto at = config.find(key);
  if (at == std::string::npos) return 1;
  const auto end = config.find_first_of(", \n", at + key.size());
  std::cout << config.substr(at + key.size(), end - at - key.size());
  return 0;
}
