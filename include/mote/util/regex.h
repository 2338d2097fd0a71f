// A compiled PCRE2 pattern (UTF-8, Unicode classes) for matching user-given
// regular expressions against generated text.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace mote {

class Regex {
 public:
  // An invalid pattern is an Error naming `what` and the offset.
  Regex(const std::string& pattern, const std::string& what);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  bool search(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string pattern_;
};

}  // namespace mote
