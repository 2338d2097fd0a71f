#include "mote/runtime/prompt_encoding.h"

namespace mote {

EncodedPrompt encode_prompt(const Tokenizer& tokenizer, const PromptSpec& spec) {
  EncodedPrompt out;
  if (spec.prompt) {
    out.text = *spec.prompt;
    out.tokens = tokenizer.encode(out.text, spec.add_special_tokens);
    const int32_t bos = tokenizer.bos_id();
    out.double_bos = spec.add_special_tokens && bos >= 0 && out.tokens.size() >= 2 && out.tokens[0] == bos && out.tokens[1] == bos;
  } else {
    out.text = render_deepseek_chat(tokenizer, spec.messages);
    out.tokens = tokenizer.encode(out.text, false);
  }
  return out;
}

}  // namespace mote
