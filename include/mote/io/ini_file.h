// INI files: job files (--config) and mask files. Boost.Program_options
// parses them; this checks what Boost would read silently wrong and finds
// the line of a key for messages.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace mote {

// Reads an INI file (a job or mask file: a regular file of at most 1 MiB,
// UTF-8) and checks that every line is blank, a comment, a [section] or
// `key = value` with a plain key; errors name the file and line and quote
// at most a short escaped excerpt, whatever file was named. Returns the
// text as Boost should read it: values unquoted, comments blanked.
std::string read_ini_file(const std::filesystem::path& path, const char* what);
// The same checks for INI text that is not a file (`where` names it).
std::string check_ini_text(const std::string& text, const std::string& where, const char* what);

// The 1-based lines of every key of an INI text ("section.key" for keys
// under [section]), in order: one pass for a file's many messages.
std::map<std::string, std::vector<int>> ini_key_lines(std::string_view text);

// 1-based line of the `occurrence`-th (0-based) `key` ("section.key" for
// keys under [section]) in an INI file, or 0 when it is not found.
int find_ini_line(const std::filesystem::path& path, const std::string& key, int occurrence = 0);

}  // namespace mote
