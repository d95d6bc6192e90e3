#include "dfar/core/format.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>

namespace dfar {
namespace {

// A parsed "{:spec}": [width][.precision][type].
struct Spec {
  int width = 0;
  int precision = -1;
  char type = '\0';
  bool valid = true;
};

Spec ParseSpec(std::string_view text) {
  Spec spec;
  std::size_t i = 0;
  auto read_number = [&]() {
    int value = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) && value < 1000) {
      value = value * 10 + (text[i++] - '0');
    }
    return value;
  };
  spec.width = read_number();
  if (i < text.size() && text[i] == '.') {
    ++i;
    const std::size_t digits_at = i;
    spec.precision = read_number();
    if (i == digits_at) spec.valid = false;
  }
  if (i < text.size()) spec.type = text[i++];
  if (i != text.size() || (spec.type != '\0' && std::string_view("dfegs").find(spec.type) == std::string_view::npos)) {
    spec.valid = false;
  }
  return spec;
}

std::string Pad(std::string text, int width, bool numeric) {
  if (static_cast<int>(text.size()) >= width) return text;
  const std::string fill(static_cast<std::size_t>(width) - text.size(), ' ');
  return numeric ? fill + text : text + fill;  // fmt: numbers right, text left
}

// Without a precision or type, fmt prints the shortest text that reads back
// as the same value; this takes the shortest of %.Ng over N in [first, 17].
std::string ShortestRoundTrip(double value, bool single_precision) {
  char text[64];
  for (int digits = single_precision ? 6 : 15; digits <= 17; ++digits) {
    std::snprintf(text, sizeof(text), "%.*g", digits, value);
    const double back = std::strtod(text, nullptr);
    if (single_precision ? static_cast<float>(back) == static_cast<float>(value) : back == value) break;
  }
  return text;
}

std::string FormatFloat(double value, const Spec& spec) {
  const char type = spec.type == '\0' ? 'g' : spec.type;
  char buffer[512];
  if (spec.precision >= 0) {
    char format[16];
    std::snprintf(format, sizeof(format), "%%.%d%c", spec.precision, type);
    std::snprintf(buffer, sizeof(buffer), format, value);
  } else {
    char format[8];
    std::snprintf(format, sizeof(format), "%%%c", type);  // printf's default precision (6), as fmt's f/e
    std::snprintf(buffer, sizeof(buffer), format, value);
  }
  return buffer;
}

bool IsFloatType(char type) {
  return type == 'f' || type == 'e' || type == 'g';
}

// Whether spec can format arg: d takes integers, f/e/g numbers, s text.
bool Fits(const FormatArg& arg, const Spec& spec) {
  using Kind = FormatArg::Kind;
  if (!spec.valid) return false;
  const bool text = arg.kind() == Kind::kText;
  if (spec.type == 's') return text;
  if (spec.type == 'd') return arg.kind() == Kind::kSigned || arg.kind() == Kind::kUnsigned;
  if (IsFloatType(spec.type)) return !text;
  return true;
}

// Formats an argument that Fits(spec).
std::string FormatOne(const FormatArg& arg, const Spec& spec) {
  using Kind = FormatArg::Kind;
  std::string text;
  switch (arg.kind()) {
    case Kind::kSigned:
      text = IsFloatType(spec.type) ? FormatFloat(static_cast<double>(arg.as_signed()), spec)
                                    : std::to_string(arg.as_signed());
      break;
    case Kind::kUnsigned:
      text = IsFloatType(spec.type) ? FormatFloat(static_cast<double>(arg.as_unsigned()), spec)
                                    : std::to_string(arg.as_unsigned());
      break;
    case Kind::kFloat:
      text = spec.type == '\0' && spec.precision < 0 ? ShortestRoundTrip(arg.as_float(), arg.single_precision())
                                                     : FormatFloat(arg.as_float(), spec);
      break;
    case Kind::kText:
      text = spec.precision >= 0 ? arg.text().substr(0, static_cast<std::size_t>(spec.precision)) : arg.text();
      break;
  }
  return Pad(std::move(text), spec.width, arg.kind() != Kind::kText);
}

}  // namespace

std::string FormatArgs(std::string_view pattern, const FormatArg* args, std::size_t count) {
  std::string out;
  out.reserve(pattern.size() + 16 * count);
  std::size_t next = 0;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if ((c == '{' || c == '}') && i + 1 < pattern.size() && pattern[i + 1] == c) {
      out += c;
      ++i;
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    const std::size_t close = pattern.find('}', i);
    if (close == std::string_view::npos) {
      out += "{!unclosed}";
      break;
    }
    std::string_view field = pattern.substr(i + 1, close - i - 1);
    i = close;
    if (!field.empty() && field.front() != ':') {
      out += "{!positional fields are not supported: " + std::string(field) + "}";
      continue;
    }
    if (next >= count) {
      out += "{!missing argument}";
      continue;
    }
    const Spec spec = ParseSpec(field.empty() ? field : field.substr(1));
    const FormatArg& arg = args[next++];
    out += Fits(arg, spec) ? FormatOne(arg, spec) : "{!bad spec '" + std::string(field) + "'}";
  }
  return out;
}

}  // namespace dfar
