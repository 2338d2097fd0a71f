#include "mote/io/ini_file.h"

#include <sstream>

#include "mote/io/json_file.h"
#include "mote/util/error.h"
#include "mote/util/utf8.h"

namespace mote {
namespace {

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

}  // namespace

std::string read_ini_file(const std::filesystem::path& path, const char* what) {
  return check_ini_text(read_input_file(path, what, 1u << 20), path.string(), what);
}

std::string check_ini_text(const std::string& text, const std::string& where, const char* what) {
  const std::filesystem::path path = where;
  if (const auto bad = find_invalid_utf8(text)) fail("{}: invalid UTF-8 at byte {}", where, *bad);
  check_line_endings(text, path, what);
  std::istringstream in(text);
  std::string line, parsed;  // what Boost reads: the same lines, values unquoted
  // Quote a bad line only from a file that read as INI before it: a file
  // named by mistake (include = /etc/shadow) has nothing of it echoed.
  bool ini_so_far = false;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') {
      parsed += "\n";
      continue;
    }
    if (t.front() == '[' && t.back() == ']') {
      ini_so_far = true;
      parsed += t + "\n";
      continue;
    }
    const auto eq = t.find('=');
    const std::string key = trim(eq == std::string::npos ? std::string() : t.substr(0, eq));
    const bool plain =
        !key.empty() && key.size() <= 64 &&
        key.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == std::string::npos;
    if (!plain && !ini_so_far) {
      fail("{}:{}: expected 'key = value', a [section] or a # comment: is it a {}?", path.string(), number, what);
    }
    if (!plain) {
      fail("{}:{}: expected 'key = value', a [section] or a # comment, not '{}'", path.string(), number,
           short_excerpt(t));
    }
    ini_so_far = true;
    // Boost cuts a value at its first '#': a comment after blanks is meant
    // as one, a '#' inside the value would silently shorten it.
    std::string value = t.substr(eq + 1);
    if (const auto hash = value.find('#'); hash != std::string::npos) {
      if (hash > 0 && value[hash - 1] != ' ' && value[hash - 1] != '\t') {
        fail(
            "{}:{}: key '{}': a '#' inside a value would start a comment here and cut the value short; give this "
            "option on the "
            "command line instead",
            path.string(), number, key);
      }
      value.resize(hash);
    }
    value = trim(value);
    // Quotes around a whole value are INI's, not the value's.
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    parsed += key + " = " + value + "\n";
  }
  return parsed;
}

std::map<std::string, std::vector<int>> ini_key_lines(std::string_view text) {
  std::map<std::string, std::vector<int>> lines;
  std::istringstream in{std::string(text)};
  std::string line, section;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[' && t.back() == ']') {
      section = trim(t.substr(1, t.size() - 2));
      continue;
    }
    const auto eq = t.find('=');
    const std::string name = trim(eq == std::string::npos ? t : t.substr(0, eq));
    lines[section.empty() ? name : section + "." + name].push_back(number);
  }
  return lines;
}

int find_ini_line(const std::filesystem::path& path, const std::string& key, int occurrence) {
  std::string text;
  try {
    text = read_input_file(path, "job file", 1u << 20);
  } catch (const Error&) {
    return 0;
  }
  const auto lines = ini_key_lines(text);
  const auto it = lines.find(key);
  if (it == lines.end() || occurrence < 0 || static_cast<size_t>(occurrence) >= it->second.size()) return 0;
  return it->second[static_cast<size_t>(occurrence)];
}

}  // namespace mote
