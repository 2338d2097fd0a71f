// Shared pieces of the fuzz harnesses: every harness feeds bytes to one
// parser; a mote::Error is the expected answer to bad input, anything else
// (a crash, a sanitizer report, another exception) is a finding.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace mote::fuzz {

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A scratch file for parsers that read paths, one per process.
inline std::filesystem::path scratch_file(const char* name) {
  return std::filesystem::temp_directory_path() / ("mote-fuzz-" + std::to_string(::getpid()) + "-" + name);
}

inline std::filesystem::path write_scratch(const char* name, const uint8_t* data, size_t size) {
  const auto path = scratch_file(name);
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace mote::fuzz
