// Jinja2's lexer as transformers configures it: trim_blocks drops the first
// newline after a block or comment tag, lstrip_blocks drops spaces and tabs
// before one at the start of a line, and `-`/`+` inside a tag override both.
// Newlines are normalised to \n and one trailing newline is dropped, as
// Jinja2 does before lexing.
#include <cstring>

#include "mote/jinja/pystr.h"
#include "mote/util/error.h"
#include "mote/util/utf8.h"
#include "syntax.h"

namespace mote::jinja::detail {

void syntax_error(const std::string& name, int line, const std::string& message) {
  fail("{}:{}: {}", name, line, message);
}

namespace {

std::string normalize_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Python's str.rstrip() and the `\s*` after `-%}`: Unicode whitespace.
size_t space_before(std::string_view text) {
  size_t end = text.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    size_t pos = start;
    if (!pystr::is_space(next_code_point(text, pos))) break;
    end = start;
  }
  return end;
}

size_t skip_space(std::string_view text, size_t pos) {
  while (pos < text.size()) {
    size_t next = pos;
    if (!pystr::is_space(next_code_point(text, next))) break;
    pos = next;
  }
  return pos;
}

int count_lines(std::string_view text) {
  int n = 0;
  for (const char c : text) n += c == '\n';
  return n;
}

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Lexer {
 public:
  Lexer(std::string source, const std::string& name) : src_(std::move(source)), name_(name) {}

  std::vector<Piece> run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos <= src_.size()) {
      size_t tag = src_.find('{', pos);
      while (tag != std::string::npos && (tag + 1 >= src_.size() || std::strchr("{%#", src_[tag + 1]) == nullptr)) {
        tag = src_.find('{', tag + 1);
      }
      std::string text = src_.substr(pos, (tag == std::string::npos ? src_.size() : tag) - pos);
      const int text_line = line_;
      if (tag == std::string::npos) {
        emit_text(std::move(text), text_line);
        break;
      }
      const char kind = src_[tag + 1];
      const char sign = tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+') ? src_[tag + 2] : 0;
      if (sign == '-') {
        text.resize(space_before(text));
      } else if (sign != '+' && kind != '{') {
        const size_t line_begin = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((line_begin > 0 || line_starting) && text.find_first_not_of(" \t", line_begin) == std::string::npos) {
          text.resize(line_begin);
        }
      }
      line_ += count_lines(src_.substr(pos, tag - pos));
      emit_text(std::move(text), text_line);
      pos = tag + 2 + (sign ? 1 : 0);
      size_t end = kind == '#' ? comment(pos) : tag_tokens(pos, kind);
      line_starting = end > 0 && src_[end - 1] == '\n';
      pos = end;
      if (pos == src_.size()) break;
    }
    return std::move(pieces_);
  }

 private:
  void emit_text(std::string text, int line) {
    if (text.empty()) return;
    pieces_.push_back(Piece{Piece::Kind::Text, std::move(text), {}, line});
  }

  // After a tag's closing marker at `pos` (past it): `-` eats all following
  // whitespace, `+` nothing, otherwise a block or comment eats one newline.
  size_t after_end(size_t pos, char sign, bool block) {
    if (sign == '-')
      pos = skip_space(src_, pos);
    else if (sign != '+' && block && pos < src_.size() && src_[pos] == '\n')
      ++pos;
    return pos;
  }

  size_t comment(size_t pos) {
    const int start_line = line_;
    const size_t close = src_.find("#}", pos);
    if (close == std::string::npos) syntax_error(name_, start_line, "comment not closed ('#}' missing)");
    const char sign = close > pos && (src_[close - 1] == '-' || src_[close - 1] == '+') ? src_[close - 1] : 0;
    size_t end = after_end(close + 2, sign, true);
    line_ += count_lines(std::string_view(src_).substr(pos, end - pos));
    return end;
  }

  size_t tag_tokens(size_t pos, char kind) {
    Piece piece;
    piece.kind = kind == '{' ? Piece::Kind::Output : Piece::Kind::Statement;
    piece.line = line_;
    const char* close = kind == '{' ? "}}" : "%}";
    int depth = 0;
    while (true) {
      const size_t ws = skip_space(src_, pos);
      line_ += count_lines(std::string_view(src_).substr(pos, ws - pos));
      pos = ws;
      if (pos >= src_.size()) {
        syntax_error(name_, piece.line, fmt::format("tag not closed ('{}' missing)", close));
      }
      if (depth == 0) {
        const char sign = src_[pos] == '-' || src_[pos] == '+' ? src_[pos] : 0;
        if (src_.compare(pos + (sign ? 1 : 0), 2, close) == 0 && !(sign == '+' && kind == '{')) {
          piece.tokens.push_back(Token{Token::Type::End, close, {}, line_});
          const size_t after = pos + (sign ? 1 : 0) + 2;
          const size_t end = after_end(after, sign, kind == '%');
          line_ += count_lines(std::string_view(src_).substr(after, end - after));
          pieces_.push_back(std::move(piece));
          return end;
        }
      }
      pos = token(pos, piece.tokens, depth);
    }
  }

  size_t token(size_t pos, std::vector<Token>& out, int& depth) {
    const char c = src_[pos];
    Token t;
    t.line = line_;
    if (is_name_start(c)) {
      size_t end = pos;
      while (end < src_.size() && (is_name_start(src_[end]) || is_digit(src_[end]))) ++end;
      t.type = Token::Type::Name;
      t.text = src_.substr(pos, end - pos);
      out.push_back(std::move(t));
      return end;
    }
    if (is_digit(c)) return number(pos, out);
    if (c == '\'' || c == '"') return string_literal(pos, out);
    static const char* const kOperators[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                                             ">",  "=",  "(",  ")",  "[",  "]",  "{", "}", ",", ".", ":", "|"};
    for (const char* op : kOperators) {
      const size_t n = std::strlen(op);
      if (src_.compare(pos, n, op) != 0) continue;
      if (n == 1 && std::strchr("([{", op[0])) ++depth;
      if (n == 1 && std::strchr(")]}", op[0])) {
        if (depth == 0) syntax_error(name_, line_, fmt::format("unexpected '{}'", op));
        --depth;
      }
      t.type = Token::Type::Operator;
      t.text = op;
      out.push_back(std::move(t));
      return pos + n;
    }
    size_t next = pos;
    const char32_t cp = next_code_point(src_, next);
    std::string shown;
    append_utf8(shown, cp);
    syntax_error(name_, line_, fmt::format("unexpected character '{}' in a tag", shown));
  }

  size_t number(size_t pos, std::vector<Token>& out) {
    size_t end = pos;
    std::string digits;
    const auto run = [&] {
      while (end < src_.size() &&
             (is_digit(src_[end]) || (src_[end] == '_' && end + 1 < src_.size() && is_digit(src_[end + 1])))) {
        if (src_[end] != '_') digits += src_[end];
        ++end;
      }
    };
    run();
    bool real = false;
    if (end + 1 < src_.size() && src_[end] == '.' && is_digit(src_[end + 1])) {
      real = true;
      digits += src_[end++];
      run();
    }
    if (end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
      size_t e = end + 1;
      if (e < src_.size() && (src_[e] == '+' || src_[e] == '-')) ++e;
      if (e < src_.size() && is_digit(src_[e])) {
        real = true;
        digits += 'e';
        digits += src_.substr(end + 1, e - end - 1);
        end = e;
        run();
      }
    }
    Token t;
    t.line = line_;
    t.text = src_.substr(pos, end - pos);
    if (real) {
      t.type = Token::Type::Float;
      t.value = Value::from(std::strtod(digits.c_str(), nullptr));
    } else {
      t.type = Token::Type::Integer;
      errno = 0;
      const long long v = std::strtoll(digits.c_str(), nullptr, 10);
      if (errno == ERANGE) syntax_error(name_, line_, fmt::format("the integer {} is too large", t.text));
      t.value = Value::from(static_cast<int64_t>(v));
    }
    out.push_back(std::move(t));
    return end;
  }

  // A string literal with Python's escapes (Jinja2 decodes them with
  // Python's unicode-escape codec).
  size_t string_literal(size_t pos, std::vector<Token>& out) {
    const char quote = src_[pos];
    const int start_line = line_;
    std::string value;
    size_t i = pos + 1;
    while (true) {
      if (i >= src_.size()) syntax_error(name_, start_line, "string literal not closed");
      const char c = src_[i];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        value += c;
        ++i;
        continue;
      }
      if (i + 1 >= src_.size()) syntax_error(name_, line_, "string literal not closed");
      const char e = src_[i + 1];
      i += 2;
      switch (e) {
        case '\n':
          ++line_;
          break;
        case '\\':
          value += '\\';
          break;
        case '\'':
          value += '\'';
          break;
        case '"':
          value += '"';
          break;
        case 'a':
          value += '\a';
          break;
        case 'b':
          value += '\b';
          break;
        case 'f':
          value += '\f';
          break;
        case 'n':
          value += '\n';
          break;
        case 'r':
          value += '\r';
          break;
        case 't':
          value += '\t';
          break;
        case 'v':
          value += '\v';
          break;
        case 'x':
        case 'u':
        case 'U': {
          const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t cp = 0;
          for (int k = 0; k < n; ++k) {
            const int h = i + static_cast<size_t>(k) < src_.size() ? hex_value(src_[i + static_cast<size_t>(k)]) : -1;
            if (h < 0) syntax_error(name_, line_, fmt::format("truncated \\{} escape in a string literal", e));
            cp = cp * 16 + static_cast<uint32_t>(h);
          }
          i += static_cast<size_t>(n);
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            syntax_error(name_, line_, fmt::format("escape \\{} gives U+{:X}, not a character", e, cp));
          }
          append_utf8(value, cp);
          break;
        }
        case 'N':
          syntax_error(name_, line_, "\\N{...} escapes are not supported");
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && i < src_.size() && src_[i] >= '0' && src_[i] <= '7'; ++k)
              cp = cp * 8 + static_cast<uint32_t>(src_[i++] - '0');
            append_utf8(value, cp);
          } else {
            // Python keeps an unknown escape as written.
            value += '\\';
            --i;
          }
      }
    }
    Token t;
    t.type = Token::Type::String;
    t.text = std::move(value);
    t.line = start_line;
    out.push_back(std::move(t));
    return i + 1;
  }

  std::string src_;
  const std::string& name_;
  int line_ = 1;
  std::vector<Piece> pieces_;
};

}  // namespace

std::vector<Piece> lex(std::string_view source, const std::string& name) {
  if (const auto bad = find_invalid_utf8(source)) {
    int line = 1;
    for (size_t i = 0; i < *bad; ++i) line += source[i] == '\n';
    syntax_error(name, line, fmt::format("invalid UTF-8 at byte {}", *bad + 1));
  }
  return Lexer(normalize_newlines(source), name).run();
}

}  // namespace mote::jinja::detail
