// Reading small JSON files (configs, tokenizers, golden data) with errors that
// name the file and, for syntax errors, the byte where parsing stopped.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace mote {

// Reads a whole input file. It must be a regular file (a device, FIFO or
// socket is refused, never read without end) of at most `max_bytes`; `what`
// names it in errors ("mask file"). A leading UTF-8 byte-order mark is
// dropped, so every text input treats one alike.
std::string read_input_file(const std::filesystem::path& path, const char* what, uint64_t max_bytes);
// Refuses a text of lines that end in CR alone (classic Mac OS), which
// would read as one long line, with a hint; `what` names the file's kind.
void check_line_endings(std::string_view text, const std::filesystem::path& path, const char* what);
// read_input_file() for the larger inputs (configs, tokenizers, prompt files): up to 4 GiB.
std::string read_text_file(const std::filesystem::path& path);
nlohmann::json read_json_file(const std::filesystem::path& path);
nlohmann::json parse_json(std::string_view text, const std::string& where);
// parse_json() keeping the objects' key order, where order is meaningful
// (a chat request's messages and template variables).
nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& where);

}  // namespace mote
