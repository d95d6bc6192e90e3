// RFC 4180 CSV parsing; see csv.h for the contract.
//
// Line numbers count '\n' only, so they agree with `grep -n`, `sed -n Np` and
// editors. A lone '\r' inside a quoted field is kept as data (the DFAR train
// file has 45 of them at the ends of reasons); outside quotes it is rejected,
// because treating it as a line break would make the reported line numbers
// disagree with every tool the user will open the file with.
//
// Memory: the table holds copies of the field bytes plus one std::string per
// field, and every field needs at least one input byte (a delimiter or line
// break). The worst case, a file of nothing but empty fields, costs about 64
// bytes per input byte (32-byte strings, vector growth), and no size read
// from the input is ever used to reserve memory.
#include "dfar/data/csv.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dfar/core/error.h"

namespace dfar {
namespace {

constexpr std::string_view kBom = "\xEF\xBB\xBF";

// 1-based line of byte `offset`: one plus the '\n's before it.
int64_t LineAt(std::string_view text, size_t offset) {
  int64_t line = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) line += text[i] == '\n';
  return line;
}

std::string JoinQuoted(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ", ";
    out += "'" + names[i] + "'";
  }
  return out;
}

// A single pass over the bytes. Fields are appended to the record as they are
// read and the field count is checked against the header as soon as it is
// exceeded, so a hostile line of a million delimiters costs one error, not a
// million strings.
class CsvParser {
 public:
  CsvParser(std::string_view bytes, const std::string& source, char delimiter)
      : bytes_(bytes), source_(source), delim_(delimiter) {}

  // Reads the next non-blank record into *record; false at end of input.
  // max_fields 0 means unbounded (the header).
  bool Next(CsvRecord* record, size_t max_fields) {
    SkipBlankLines();
    if (pos_ >= bytes_.size()) return false;
    record->fields.clear();
    record->line = line_;
    for (;;) {
      DFAR_CHECK(max_fields == 0 || record->fields.size() < max_fields, Where(record->line), ": expected ", max_fields,
                 " fields (as in the header) but found more than ", max_fields);
      record->fields.emplace_back();
      if (!ReadField(&record->fields.back())) return true;
    }
  }

 private:
  std::string Where(int64_t line) const { return source_ + ":" + std::to_string(line); }

  bool AtEnd() const { return pos_ >= bytes_.size(); }
  char Peek(size_t ahead = 0) const { return pos_ + ahead < bytes_.size() ? bytes_[pos_ + ahead] : '\0'; }

  // Length of the line break at pos_ outside quotes: 1 for LF, 2 for CRLF,
  // 0 for none. A lone CR is an error (see the file comment).
  size_t LineBreakLength() const {
    if (AtEnd()) return 0;
    if (Peek() == '\n') return 1;
    if (Peek() != '\r') return 0;
    DFAR_CHECK(Peek(1) == '\n', Where(line_),
               ": carriage return not followed by a line feed outside quotes (old Mac line endings? convert "
               "the file to LF or CRLF)");
    return 2;
  }

  void SkipBlankLines() {
    while (size_t n = LineBreakLength()) {
      pos_ += n;
      ++line_;
    }
  }

  // Reads one field into *out. Returns true if a delimiter follows (another
  // field of this record comes next), false at the record's end.
  bool ReadField(std::string* out) {
    if (Peek() == '"' && !AtEnd()) {
      ReadQuoted(out);
      DFAR_CHECK(AtEnd() || Peek() == delim_ || LineBreakLength() > 0, Where(line_),
                 ": unexpected character after a closing quote (a quote inside a quoted field must be "
                 "doubled: \"\")");
    } else {
      ReadUnquoted(out);
    }
    return ConsumeSeparator();
  }

  void ReadUnquoted(std::string* out) {
    size_t start = pos_;
    while (!AtEnd() && Peek() != delim_ && Peek() != '\n' && Peek() != '\r') {
      DFAR_CHECK(Peek() != '"', Where(line_),
                 ": stray quote in an unquoted field (quote the whole field and double inner quotes)");
      ++pos_;
    }
    out->assign(bytes_.substr(start, pos_ - start));
  }

  // pos_ is at the opening quote. Copies runs between quotes in one go.
  void ReadQuoted(std::string* out) {
    int64_t start_line = line_;
    ++pos_;
    for (;;) {
      size_t quote = bytes_.find('"', pos_);
      DFAR_CHECK(quote != std::string_view::npos, Where(start_line),
                 ": unterminated quoted field (the quote opened here is never closed)");
      std::string_view run = bytes_.substr(pos_, quote - pos_);
      for (char c : run) line_ += c == '\n';
      out->append(run);
      pos_ = quote + 1;
      if (Peek() != '"' || AtEnd()) return;  // Closing quote.
      out->push_back('"');                   // "" is an escaped quote.
      ++pos_;
    }
  }

  // After a field: a delimiter (true), or a line break / end of input (false).
  bool ConsumeSeparator() {
    if (AtEnd()) return false;
    if (Peek() == delim_) {
      ++pos_;
      return true;
    }
    size_t n = LineBreakLength();
    DFAR_CHECK(n > 0, Where(line_), ": internal CSV parser error: expected a delimiter or line break");
    pos_ += n;
    ++line_;
    return false;
  }

  std::string_view bytes_;
  const std::string& source_;
  char delim_;
  size_t pos_ = 0;
  int64_t line_ = 1;
};

void CheckDelimiter(char delimiter, const std::string& source) {
  DFAR_CHECK(delimiter != '"' && delimiter != '\n' && delimiter != '\r', source,
             ": the CSV delimiter cannot be a quote or a line break");
}

void CheckUtf8(std::string_view bytes, const std::string& source) {
  size_t bad = 0;
  if (IsValidUtf8(bytes, &bad)) return;
  int64_t line = LineAt(bytes, bad);
  size_t newline = bad == 0 ? std::string_view::npos : bytes.rfind('\n', bad - 1);
  size_t column = bad - (newline == std::string_view::npos ? 0 : newline + 1) + 1;
  DFAR_THROW(source, ":", line, ": invalid UTF-8 at byte ", column, " of the line (file offset ", bad,
             "); save the file as UTF-8");
}

// Length of the UTF-8 sequence led by `lead`, or 0 if it cannot lead one.
int SequenceLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;  // Continuation bytes, overlong leads C0/C1, and F5..FF.
}

// The second byte's allowed range is what rules out overlongs (E0, F0),
// surrogates (ED) and values above U+10FFFF (F4).
bool ValidSecondByte(unsigned char lead, unsigned char second) {
  unsigned char lo = 0x80, hi = 0xBF;
  if (lead == 0xE0) lo = 0xA0;
  if (lead == 0xED) hi = 0x9F;
  if (lead == 0xF0) lo = 0x90;
  if (lead == 0xF4) hi = 0x8F;
  return second >= lo && second <= hi;
}

}  // namespace

bool IsValidUtf8(std::string_view text, size_t* bad_offset) {
  size_t i = 0;
  while (i < text.size()) {
    auto lead = static_cast<unsigned char>(text[i]);
    int len = SequenceLength(lead);
    bool ok = len > 0 && i + len <= text.size();
    if (ok && len > 1) ok = ValidSecondByte(lead, static_cast<unsigned char>(text[i + 1]));
    for (int k = 2; ok && k < len; ++k) ok = (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
    if (!ok) {
      if (bad_offset != nullptr) *bad_offset = i;
      return false;
    }
    i += len;
  }
  return true;
}

size_t CsvTable::Column(const std::string& name) const {
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == name) return i;
  }
  DFAR_THROW(source, ": no column '", name, "'; the header has ", header.size(), " columns: ", JoinQuoted(header));
}

CsvTable ParseCsv(std::string_view bytes, const std::string& source, char delimiter) {
  CheckDelimiter(delimiter, source);
  if (bytes.substr(0, kBom.size()) == kBom) bytes.remove_prefix(kBom.size());
  CheckUtf8(bytes, source);

  CsvTable table;
  table.source = source;
  CsvParser parser(bytes, source, delimiter);
  CsvRecord header;
  DFAR_CHECK(parser.Next(&header, 0), source, ":1: empty file (expected a header row)");
  table.header = std::move(header.fields);

  const size_t width = table.header.size();
  CsvRecord record;
  while (parser.Next(&record, width)) {
    DFAR_CHECK(record.fields.size() == width, source, ":", record.line, ": expected ", width,
               " fields (as in the header) but found ", record.fields.size());
    table.rows.push_back(std::move(record));
    record = CsvRecord();
  }
  return table;
}

std::string ReadFileBytes(const std::string& path) {
  std::error_code ec;
  DFAR_CHECK(!std::filesystem::is_directory(path, ec), path, ": is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  DFAR_CHECK(in.is_open(), path, ": cannot open: ", std::strerror(errno));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  DFAR_CHECK(!in.bad(), path, ": read failed: ", std::strerror(errno));
  return bytes.str();
}

CsvTable ReadCsv(const std::string& path, char delimiter) {
  return ParseCsv(ReadFileBytes(path), path, delimiter);
}

}  // namespace dfar
