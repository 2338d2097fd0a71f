// Reading small JSON files (configs, tokenizers, golden data) with errors that
// name the file and, for syntax errors, the byte where parsing stopped.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace mote {

std::string read_text_file(const std::filesystem::path& path);
nlohmann::json read_json_file(const std::filesystem::path& path);
nlohmann::json parse_json(std::string_view text, const std::string& where);

}  // namespace mote
