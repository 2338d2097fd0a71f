// GPT-2's byte-level alphabet: each of the 256 bytes is written as one
// printable Unicode character, so that BPE tokens are ordinary strings.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace mote {

// Unicode code point that stands for `byte`.
char32_t byte_to_char(uint8_t byte);
// The byte a code point stands for, or nullopt if it is not in the alphabet.
std::optional<uint8_t> char_to_byte(char32_t cp);
// UTF-8 encoding of the byte-level characters of `bytes`.
std::string bytes_to_byte_level(std::string_view bytes);

}  // namespace mote
