// The pre-tokenizer of a tokenizer.json: text -> pieces that BPE encodes
// separately. Supports Split (a regex with Unicode classes, via ICU) and
// ByteLevel, alone or in a Sequence; other kinds are refused by name.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mote/util/error.h"

namespace mote {

// A Split regex that ran past its time limit (a pattern that backtracks
// badly): the tokenizer is broken for every text, not for one prompt, so
// a job fails on the first one instead of paying the limit per line.
class TokenizerBroken : public Error {
 public:
  using Error::Error;
};

class PreTokenizer {
 public:
  PreTokenizer();  // splits nothing
  PreTokenizer(const nlohmann::json& spec, const std::string& where);
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Splits valid UTF-8 `text` into pieces: views into `text`, in order,
  // covering it exactly unless a Split step removes its matches.
  std::vector<std::string_view> split(std::string_view text) const;
  // Set when a ByteLevel step asks for a space before text that lacks one.
  bool add_prefix_space() const { return add_prefix_space_; }

 private:
  struct Step;
  std::vector<Step> steps_;
  bool add_prefix_space_ = false;
};

}  // namespace mote
