#include "mote/jinja/pystr.h"

#include <unicode/locid.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>

#include "mote/util/error.h"
#include "mote/util/utf8.h"

namespace mote::jinja::pystr {

bool is_space(char32_t cp) {
  const auto c = static_cast<UChar32>(cp);
  const UCharDirection dir = u_charDirection(c);
  return u_charType(c) == U_SPACE_SEPARATOR || dir == U_WHITE_SPACE_NEUTRAL || dir == U_BLOCK_SEPARATOR ||
         dir == U_SEGMENT_SEPARATOR;
}

std::vector<char32_t> code_points(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) out.push_back(next_code_point(s, pos));
  return out;
}

std::string from_code_points(const std::vector<char32_t>& cps, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end; ++i) append_utf8(out, cps[i]);
  return out;
}

size_t length(std::string_view s) {
  size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  const std::vector<char32_t> cps = code_points(s);
  std::vector<char32_t> set;
  if (chars) set = code_points(*chars);
  const auto strips = [&](char32_t c) {
    return chars ? std::find(set.begin(), set.end(), c) != set.end() : is_space(c);
  };
  size_t begin = 0, end = cps.size();
  if (left)
    while (begin < end && strips(cps[begin])) ++begin;
  if (right)
    while (end > begin && strips(cps[end - 1])) --end;
  return from_code_points(cps, begin, end);
}

std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit,
                               bool from_right) {
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) fail("empty separator");
    if (!from_right) {
      size_t begin = 0;
      while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
        const size_t at = s.find(*sep, begin);
        if (at == std::string_view::npos) break;
        out.emplace_back(s.substr(begin, at - begin));
        begin = at + sep->size();
      }
      out.emplace_back(s.substr(begin));
    } else {
      size_t end = s.size();
      while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
        if (end < sep->size()) break;
        const size_t at = s.rfind(*sep, end - sep->size());
        if (at == std::string_view::npos) break;
        out.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
        end = at;
      }
      out.emplace_back(s.substr(0, end));
      std::reverse(out.begin(), out.end());
    }
    return out;
  }
  // Whitespace runs separate; none are kept at either end.
  std::vector<char32_t> cps = code_points(s);
  if (from_right) std::reverse(cps.begin(), cps.end());
  size_t i = 0;
  while (true) {
    while (i < cps.size() && is_space(cps[i])) ++i;
    if (i == cps.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      size_t end = cps.size();
      while (end > i && is_space(cps[end - 1])) --end;
      std::vector<char32_t> rest(cps.begin() + static_cast<ptrdiff_t>(i), cps.end());
      if (from_right) std::reverse(rest.begin(), rest.end());
      out.push_back(from_code_points(rest, 0, rest.size()));
      break;
    }
    size_t j = i;
    while (j < cps.size() && !is_space(cps[j])) ++j;
    std::vector<char32_t> word(cps.begin() + static_cast<ptrdiff_t>(i), cps.begin() + static_cast<ptrdiff_t>(j));
    if (from_right) std::reverse(word.begin(), word.end());
    out.push_back(from_code_points(word, 0, word.size()));
    i = j;
  }
  if (from_right) std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> splitlines(std::string_view s, bool keepends) {
  const std::vector<char32_t> cps = code_points(s);
  std::vector<std::string> out;
  size_t begin = 0;
  for (size_t i = 0; i < cps.size(); ++i) {
    const char32_t c = cps[i];
    const bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) || c == 0x85 ||
                     c == 0x2028 || c == 0x2029;
    if (!brk) continue;
    size_t end = i + 1;
    if (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') end = i + 2;
    out.push_back(from_code_points(cps, begin, keepends ? end : i));
    begin = end;
    i = end - 1;
  }
  if (begin < cps.size()) out.push_back(from_code_points(cps, begin, cps.size()));
  return out;
}

std::string replace(std::string_view s, std::string_view old, std::string_view with, int64_t count, size_t max_bytes) {
  std::string out;
  const auto append = [&](std::string_view part) {
    if (out.size() + part.size() > max_bytes) fail("replace() would build a string of more than {} bytes", max_bytes);
    out += part;
  };
  int64_t done = 0;
  if (old.empty()) {
    // Python inserts the replacement before every character and at the end.
    size_t pos = 0;
    while (pos < s.size()) {
      if (count < 0 || done < count) {
        append(with);
        ++done;
      }
      const size_t start = pos;
      next_code_point(s, pos);
      append(s.substr(start, pos - start));
    }
    if (count < 0 || done < count) append(with);
    return out;
  }
  size_t begin = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(old, begin);
    if (at == std::string_view::npos) break;
    append(s.substr(begin, at - begin));
    append(with);
    begin = at + old.size();
    ++done;
  }
  append(s.substr(begin));
  return out;
}

int64_t find(std::string_view s, std::string_view sub, bool from_right) {
  const size_t at = from_right ? s.rfind(sub) : s.find(sub);
  if (at == std::string_view::npos) return -1;
  return static_cast<int64_t>(length(s.substr(0, at)));
}

int64_t count(std::string_view s, std::string_view sub) {
  if (sub.empty()) return static_cast<int64_t>(length(s)) + 1;
  int64_t n = 0;
  for (size_t at = s.find(sub); at != std::string_view::npos; at = s.find(sub, at + sub.size())) ++n;
  return n;
}

namespace {

icu::UnicodeString to_icu(std::string_view s) {
  return icu::UnicodeString::fromUTF8(icu::StringPiece(s.data(), static_cast<int32_t>(s.size())));
}

std::string from_icu(const icu::UnicodeString& u) {
  std::string out;
  u.toUTF8String(out);
  return out;
}

bool is_cased(char32_t c) { return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_CASED) != 0; }

}  // namespace

std::string upper(std::string_view s) {
  icu::UnicodeString u = to_icu(s);
  return from_icu(u.toUpper(icu::Locale::getRoot()));
}

std::string lower(std::string_view s) {
  icu::UnicodeString u = to_icu(s);
  return from_icu(u.toLower(icu::Locale::getRoot()));
}

std::string title(std::string_view s) {
  std::string out;
  bool previous_cased = false;
  for (const char32_t c : code_points(s)) {
    std::string one;
    append_utf8(one, c);
    if (previous_cased) {
      out += lower(one);
    } else {
      append_utf8(out, static_cast<char32_t>(u_totitle(static_cast<UChar32>(c))));
    }
    previous_cased = is_cased(c);
  }
  return out;
}

std::string capitalize(std::string_view s) {
  if (s.empty()) return {};
  size_t pos = 0;
  const char32_t first = next_code_point(s, pos);
  std::string out;
  append_utf8(out, static_cast<char32_t>(u_totitle(static_cast<UChar32>(first))));
  return out + lower(s.substr(pos));
}

bool test_chars(std::string_view s, std::string_view method) {
  const std::vector<char32_t> cps = code_points(s);
  if (method == "islower" || method == "isupper") {
    bool any_cased = false;
    for (const char32_t c : cps) {
      const auto u = static_cast<UChar32>(c);
      if (method == "islower" ? (u_isupper(u) || u_istitle(u)) : (u_islower(u) || u_istitle(u))) return false;
      any_cased |= is_cased(c);
    }
    return any_cased;
  }
  if (cps.empty()) return false;
  for (const char32_t c : cps) {
    const auto u = static_cast<UChar32>(c);
    bool ok = false;
    if (method == "isspace")
      ok = is_space(c);
    else if (method == "isalpha")
      ok = u_isalpha(u);
    else if (method == "isdigit" || method == "isdecimal")
      ok = u_isdigit(u);
    else if (method == "isalnum")
      ok = u_isalpha(u) || u_isdigit(u) || u_getNumericValue(u) != U_NO_NUMERIC_VALUE;
    if (!ok) return false;
  }
  return true;
}

}  // namespace mote::jinja::pystr
