// OpenAI's harmony reply format (gpt-oss): the model answers in messages
//   <|channel|>analysis<|message|>...<|end|><|start|>assistant<|channel|>final<|message|>...<|return|>
// the analysis channel holding its reasoning and the final channel the
// answer. Output files keep the whole reply; what a person reads is the
// final channel.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "mote/tokenizer/tokenizer.h"

namespace mote {

// The text of the last message on the final channel of `generated`, up to
// its <|end|>, <|return|> or <|call|> (or the end of the tokens), or
// nullopt when the reply has none or the tokenizer has no harmony tokens.
std::optional<std::string> harmony_final_text(const Tokenizer& tokenizer, std::span<const int32_t> generated);

}  // namespace mote
