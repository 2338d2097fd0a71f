// The chat format of the DeepSeek-V3/R1 family, written out rather than
// interpreted from the Jinja template:
//   <bos>{system}<｜User｜>{user}<｜Assistant｜>{assistant}<｜end▁of▁sentence｜>...<｜Assistant｜>
// The rendered text is tokenized without adding special tokens (the BOS is
// already in it), as Hugging Face's apply_chat_template does.
#pragma once

#include <string>
#include <vector>

namespace mote {

class Tokenizer;

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// Renders `messages` with the generation prompt appended. An unknown role is
// an Error naming it.
std::string render_deepseek_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages);

}  // namespace mote
