// Format("step {} loss {:.4f}", 3, 0.25): dfar's own "{}" text formatter.
//
// Owns: the formatting of log lines (dfar/core/logging.h) and of any text
// that wants fmt-style placeholders. It exists so that no file that includes
// torch headers needs fmt, whose version differs between libtorch builds
// (see logging.h). Covers the subset of fmt's syntax that dfar uses.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>

namespace dfar {

// One argument of a format call, already reduced to a number or a string.
class FormatArg {
 public:
  enum class Kind { kSigned, kUnsigned, kFloat, kText };

  template <typename T>
  FormatArg(const T& value) {  // NOLINT(google-explicit-constructor): used implicitly by Format.
    if constexpr (std::is_same_v<T, bool>) {
      SetText(value ? "true" : "false");
    } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
      kind_ = Kind::kSigned;
      signed_ = value;
    } else if constexpr (std::is_integral_v<T>) {
      kind_ = Kind::kUnsigned;
      unsigned_ = value;
    } else if constexpr (std::is_floating_point_v<T>) {
      kind_ = Kind::kFloat;
      float_ = static_cast<double>(value);
      single_ = std::is_same_v<T, float>;
    } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
      SetText(std::string_view(value));
    } else {
      std::ostringstream os;
      os << value;
      SetText(os.str());
    }
  }

  Kind kind() const { return kind_; }
  std::int64_t as_signed() const { return signed_; }
  std::uint64_t as_unsigned() const { return unsigned_; }
  double as_float() const { return float_; }
  // A float (not double): printed by default with the digits a float holds.
  bool single_precision() const { return single_; }
  const std::string& text() const { return text_; }

 private:
  void SetText(std::string_view text) {
    kind_ = Kind::kText;
    text_ = std::string(text);
  }

  Kind kind_ = Kind::kText;
  std::int64_t signed_ = 0;
  std::uint64_t unsigned_ = 0;
  double float_ = 0.0;
  bool single_ = false;
  std::string text_;
};

// Replaces each "{}" or "{:spec}" of pattern with the next argument; "{{"
// and "}}" are literal braces. spec: [width][.precision][type], type one of
// d (integer), f, e, g (floating point), s (text); a precision truncates
// text. A spec that does not fit its argument, or a missing argument, is
// written into the text as "{!...}" rather than thrown: formatting never
// fails, so neither does a log call (tests/core/format_test.cpp covers the grammar).
std::string FormatArgs(std::string_view pattern, const FormatArg* args, std::size_t count);

template <typename... Args>
std::string Format(std::string_view pattern, const Args&... args) {
  if constexpr (sizeof...(Args) == 0) {
    return FormatArgs(pattern, nullptr, 0);
  } else {
    const FormatArg list[] = {FormatArg(args)...};
    return FormatArgs(pattern, list, sizeof...(Args));
  }
}

}  // namespace dfar
