// RFC 4180 CSV reading.
//
// Owns: turning bytes into records. Handles a UTF-8 BOM, CRLF and LF line
// ends, quoted fields that span lines, and escaped quotes (""). Every record
// remembers the 1-based line it starts on, so later errors can name it.
//
// Failure: throws dfar::Error naming `file:line` for an unterminated quote,
// a stray quote inside an unquoted field, invalid UTF-8, an empty file, and a
// record whose field count differs from the header's. Never crashes and never
// allocates more than a small multiple of the input size, whatever the bytes.
// Thread-safety: free functions, no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dfar {

struct CsvRecord {
  std::vector<std::string> fields;
  int64_t line = 0;  // 1-based line of the record's first character.
};

struct CsvTable {
  std::string source;               // File path (or a name given to ParseCsv), used in messages.
  std::vector<std::string> header;  // First record.
  std::vector<CsvRecord> rows;      // Every record after the header.

  // Index of the header named `name`; throws naming the file and the headers found.
  size_t Column(const std::string& name) const;
};

// Parses `bytes` as CSV. `source` names the input in error messages.
CsvTable ParseCsv(std::string_view bytes, const std::string& source, char delimiter = ',');

// Reads and parses a file. A missing or unreadable file is an error naming it.
CsvTable ReadCsv(const std::string& path, char delimiter = ',');

// True if `text` is valid UTF-8 (no overlongs, surrogates or values > U+10FFFF).
// On failure, *bad_offset is set to the first invalid byte's offset.
bool IsValidUtf8(std::string_view text, size_t* bad_offset = nullptr);

// Reads a whole file into memory; error names the file.
std::string ReadFileBytes(const std::string& path);

}  // namespace dfar
