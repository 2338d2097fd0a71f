#include "mote/runtime/prompt_encoding.h"

#include "mote/util/error.h"

namespace mote {

EncodedPrompt encode_prompt(const Tokenizer& tokenizer, const ChatTemplate* chat, const PromptSpec& spec) {
  EncodedPrompt out;
  if (spec.prompt) {
    out.text = *spec.prompt;
    out.tokens = tokenizer.encode(out.text, spec.add_special_tokens);
    const int32_t bos = tokenizer.bos_id();
    out.double_bos =
        spec.add_special_tokens && bos >= 0 && out.tokens.size() >= 2 && out.tokens[0] == bos && out.tokens[1] == bos;
  } else {
    if (!chat) fail("the request is a conversation but the model has no chat template (give --chat-template FILE)");
    out.text = chat->render(*spec.chat);
    out.tokens = tokenizer.encode(out.text, false);
  }
  return out;
}

void check_chat_variables(const ChatTemplate& chat, const PromptSpec& spec, const std::string& where) {
  if (!spec.chat) return;
  for (const auto& [key, value] : spec.chat->items()) {
    if (key == "messages" || key == "add_generation_prompt" || key == "current_date" || chat.reads(key)) continue;
    fail(
        "{}: unknown key '{}': neither a prompt-file key (id, class, messages, mask, chat_template, "
        "add_generation_prompt) "
        "nor a variable the chat template {} reads",
        where, key, chat.name());
  }
}

}  // namespace mote
