// dfar::Error — the one error type of dfar.
//
// Owns: a human-readable message plus where it arose (source file and line
// of the throw site) and, when the error is about user input, the input's
// location ("data.csv:3", "config.yaml:12 key train.lr").
//
// Library code reports every failure by throwing dfar::Error (never exit()).
// The CLI catches it, prints what() and returns a non-zero exit code.
// Thread-safety: immutable after construction; safe to share.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace dfar {

class Error : public std::runtime_error {
 public:
  Error(std::string message, const char* src_file, int src_line)
      : std::runtime_error(message), message_(std::move(message)), src_file_(src_file), src_line_(src_line) {}

  // The message alone, without the source location.
  const std::string& message() const { return message_; }
  // "src/data/csv.cpp:42": where in dfar's code the error was raised.
  std::string origin() const { return std::string(src_file_) + ":" + std::to_string(src_line_); }

 private:
  std::string message_;
  const char* src_file_;
  int src_line_;
};

namespace detail {
// Streams every argument into one string: StrCat("a", 1, 'b') == "a1b".
template <typename... Args>
std::string StrCat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace dfar

// Throws dfar::Error with a message built from the streamed arguments.
#define DFAR_THROW(...) throw ::dfar::Error(::dfar::detail::StrCat(__VA_ARGS__), __FILE__, __LINE__)

// Throws dfar::Error unless cond holds. The message names the failed
// condition only through the caller's arguments: write messages for users.
#define DFAR_CHECK(cond, ...)  \
  do {                         \
    if (!(cond)) {             \
      DFAR_THROW(__VA_ARGS__); \
    }                          \
  } while (0)
