#include "mote/tokenizer/harmony.h"

#include <vector>

namespace mote {

std::optional<std::string> harmony_final_text(const Tokenizer& tokenizer, std::span<const int32_t> generated) {
  const int32_t channel = tokenizer.added_token_id("<|channel|>"), message = tokenizer.added_token_id("<|message|>");
  const int32_t ends[] = {tokenizer.added_token_id("<|end|>"), tokenizer.added_token_id("<|return|>"),
                          tokenizer.added_token_id("<|call|>")};
  if (channel < 0 || message < 0) return std::nullopt;
  const auto is_end = [&](int32_t id) { return id == ends[0] || id == ends[1] || id == ends[2]; };
  std::optional<std::string> found;
  for (size_t i = 0; i < generated.size(); ++i) {
    if (generated[i] != channel) continue;
    // The channel's name runs to <|message|>; a constraint may follow the
    // name ("final <|constrain|>json"), so only its first word counts.
    size_t m = i + 1;
    while (m < generated.size() && generated[m] != message && generated[m] != channel) ++m;
    if (m == generated.size() || generated[m] != message) continue;
    const std::string name = tokenizer.decode(generated.subspan(i + 1, m - i - 1));
    const size_t space = name.find_first_of(" <");
    if (name.substr(0, space) != "final") continue;
    size_t e = m + 1;
    while (e < generated.size() && !is_end(generated[e])) ++e;
    found = tokenizer.decode(generated.subspan(m + 1, e - m - 1));
    i = e;
  }
  return found;
}

}  // namespace mote
