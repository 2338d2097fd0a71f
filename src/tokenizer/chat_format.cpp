#include "mote/tokenizer/chat_format.h"

#include "mote/tokenizer/tokenizer.h"
#include "mote/util/error.h"

namespace mote {

std::string render_deepseek_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages) {
  static const std::string kUser = "<｜User｜>";
  static const std::string kAssistant = "<｜Assistant｜>";
  static const std::string kEnd = "<｜end▁of▁sentence｜>";
  for (const auto& marker : {kUser, kAssistant}) {
    if (tokenizer.added_token_id(marker) < 0) fail("the tokenizer lacks the chat token '{}' of the DeepSeek chat format", marker);
  }
  // System prompts come first, right after BOS, as in DeepSeek-R1's template.
  std::string out = tokenizer.bos_text();
  for (const auto& m : messages) {
    if (m.role == "system") {
      out += m.content;
    } else if (m.role != "user" && m.role != "assistant") {
      fail("chat role '{}' is not supported (supported: system, user, assistant)", m.role);
    }
  }
  for (const auto& m : messages) {
    if (m.role == "user") {
      out += kUser + m.content;
    } else if (m.role == "assistant") {
      out += kAssistant + m.content + kEnd;
    }
  }
  return out + kAssistant;
}

}  // namespace mote
