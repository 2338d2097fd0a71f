// Python's str methods on UTF-8 text, counted in code points as Python
// counts them. Character classes and case mappings come from ICU.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mote::jinja::pystr {

// str.isspace() of one code point: category Zs or bidi class WS, B or S.
bool is_space(char32_t cp);
std::vector<char32_t> code_points(std::string_view s);
std::string from_code_points(const std::vector<char32_t>& cps, size_t begin, size_t end);
size_t length(std::string_view s);

// strip/lstrip/rstrip; `chars` absent strips whitespace.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// split(sep, maxsplit) and rsplit; `sep` absent splits on whitespace runs.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit,
                               bool from_right);
std::vector<std::string> splitlines(std::string_view s, bool keepends);
std::string replace(std::string_view s, std::string_view old, std::string_view with, int64_t count, size_t max_bytes);
// Counts and positions are in code points; find returns -1 when absent.
int64_t find(std::string_view s, std::string_view sub, bool from_right);
int64_t count(std::string_view s, std::string_view sub);
std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string title(std::string_view s);       // str.title()
std::string capitalize(std::string_view s);  // str.capitalize()
// isalpha, isdigit, isalnum, isspace, islower, isupper by name.
bool test_chars(std::string_view s, std::string_view method);

}  // namespace mote::jinja::pystr
