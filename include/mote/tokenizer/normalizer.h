// The normalizer of a tokenizer.json: text -> the text that is
// pre-tokenized, applied to each run between added tokens (which are
// matched on the text as written). Supported: none, NFC (ICU), Prepend,
// Replace of a literal string, and a Sequence of these; other kinds are
// refused by name.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mote {

// `text` with every occurrence of `from` (non-empty) replaced by `to`, left
// to right; shared by Replace normalizers and Replace decoders.
std::string replace_all(std::string_view text, std::string_view from, std::string_view to);

class Normalizer {
 public:
  Normalizer() = default;  // normalizes nothing
  Normalizer(const nlohmann::json& spec, const std::string& where);

  bool empty() const { return steps_.empty(); }
  // `text` is valid UTF-8; so is the result.
  std::string apply(std::string_view text) const;

 private:
  enum class Kind { Nfc, Prepend, Replace };
  struct Step {
    Kind kind;
    std::string a, b;  // Prepend: a = prefix; Replace: a -> b
  };
  std::vector<Step> steps_;
};

}  // namespace mote
