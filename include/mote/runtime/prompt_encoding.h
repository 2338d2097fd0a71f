// A prompt-file entry to token ids: raw prompts through the tokenizer (with
// special tokens unless the entry says otherwise), conversations through the
// model family's chat format.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mote/io/prompt_file.h"
#include "mote/tokenizer/tokenizer.h"

namespace mote {

struct EncodedPrompt {
  std::string text;  // exactly what was tokenized
  std::vector<int32_t> tokens;
  bool double_bos = false;  // the text starts with BOS and another was added
};

EncodedPrompt encode_prompt(const Tokenizer& tokenizer, const PromptSpec& spec);

}  // namespace mote
