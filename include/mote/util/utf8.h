// UTF-8 checks for text that comes from users (prompt files, tokenizer input)
// and repair for text that comes from the model (decoded token bytes, which
// may end in the middle of a character).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mote {

// Byte offset of the first byte that does not start a valid UTF-8 sequence
// (overlong forms, surrogates and code points past U+10FFFF are invalid), or
// nullopt when the whole text is valid.
std::optional<size_t> find_invalid_utf8(std::string_view text);

// Copy of `bytes` in which every invalid sequence is replaced by U+FFFD, the
// way Hugging Face tokenizers decode byte-level tokens.
std::string repair_utf8(std::string_view bytes);

// repair_utf8 for bytes that arrive in pieces: appends to `out` the repair
// of as much of `bytes` as later bytes cannot change, and returns how many
// bytes that was. What is left is the start of a character that more bytes
// may complete; repair_utf8 of all of `bytes` is `out` plus one U+FFFD for
// each byte left.
size_t repair_utf8_prefix(std::string_view bytes, std::string& out);

// Decodes one code point at `pos` of valid UTF-8 and advances `pos`.
char32_t next_code_point(std::string_view text, size_t& pos);

// Appends the UTF-8 encoding of `cp`.
void append_utf8(std::string& out, char32_t cp);

// `text` (valid UTF-8) safe to print on a terminal: control characters
// other than newline and tab (C0, DEL and C1, which start terminal escape
// sequences) become \x1b, \u009b and the like.
std::string escape_controls(std::string_view text);

// At most `max` bytes of `text` (valid UTF-8), cut at a character boundary,
// with "... (N bytes)" when cut: for quoting long messages.
std::string cut_utf8(std::string_view text, size_t max);

// At most `max` characters of `text`, non-printable ones escaped, for
// quoting untrusted input in messages.
std::string short_excerpt(std::string_view text, size_t max = 16);

}  // namespace mote
