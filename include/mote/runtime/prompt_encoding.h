// A prompt-file entry to token ids: raw prompts through the tokenizer (with
// special tokens unless the entry says otherwise), conversations through the
// model's chat template and then the tokenizer without added special tokens
// (the template writes its own), as apply_chat_template does.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mote/io/prompt_file.h"
#include "mote/tokenizer/chat_template.h"
#include "mote/tokenizer/tokenizer.h"

namespace mote {

struct EncodedPrompt {
  std::string text;  // exactly what was tokenized
  std::vector<int32_t> tokens;
  bool double_bos = false;  // the text starts with BOS and another was added
};

// `chat` renders conversations; null when the model has none (a
// conversation is then an Error). A template's raise_exception() is a
// jinja::RaisedError: the request fails, not the job.
EncodedPrompt encode_prompt(const Tokenizer& tokenizer, const ChatTemplate* chat, const PromptSpec& spec);

// A conversation's keys that are neither mote's nor a variable `chat` reads
// are an Error naming the first (most likely a misspelt key).
void check_chat_variables(const ChatTemplate& chat, const PromptSpec& spec, const std::string& where);

}  // namespace mote
