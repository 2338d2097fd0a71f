// Prompt files (JSONL or plain text) from arbitrary bytes, encoded with the
// bundled tokenizer and chat template as a job would.
#include "fuzz_util.h"
#include "mote/io/prompt_file.h"
#include "mote/runtime/prompt_encoding.h"
#include "mote/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mote;
  static const Tokenizer tokenizer = Tokenizer::load(MOTE_MODEL_DIR);
  static const std::optional<ChatTemplate> chat = ChatTemplate::load(MOTE_MODEL_DIR, std::nullopt);
  for (const char* name : {"prompts.jsonl", "prompts.txt"}) {
    try {
      for (const auto& spec : read_prompt_file(fuzz::write_scratch(name, data, size))) {
        try {
          check_chat_variables(*chat, spec, "fuzz");
          (void)encode_prompt(tokenizer, &*chat, spec);
        } catch (const Error&) {
        }
      }
    } catch (const Error&) {
    }
  }
  return 0;
}
