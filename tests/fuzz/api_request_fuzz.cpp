// Request bodies of `mote serve` from arbitrary bytes: read as a chat, a
// completions, a tokenize and a detokenize request, then (when accepted)
// rendered and encoded with the bundled tokenizer and chat template as the
// server would. Only ApiError may come out.
#include "fuzz_util.h"
#include "mote/runtime/prompt_encoding.h"
#include "mote/server/api.h"
#include "mote/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mote;
  static const Tokenizer tokenizer = Tokenizer::load(MOTE_MODEL_DIR);
  static const std::optional<ChatTemplate> chat = ChatTemplate::load(MOTE_MODEL_DIR, std::nullopt);
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const auto reads = [](const std::string& key) { return chat->reads(key); };
  const auto encode = [&](const PromptSpec& spec) {
    try {
      (void)encode_prompt(tokenizer, &*chat, spec);
    } catch (const Error&) {  // a template's refusal, an invalid string: the client's 400
    }
  };
  for (const auto endpoint : {api::Endpoint::Chat, api::Endpoint::Completions}) {
    try {
      const api::ApiRequest r = api::parse_request(endpoint, body, reads);
      PromptSpec spec;
      if (r.chat) {
        spec.chat = *r.chat;
        encode(spec);
      }
      for (const auto& p : r.prompts) {
        if (!p.text) continue;
        PromptSpec text;
        text.prompt = *p.text;
        encode(text);
      }
    } catch (const api::ApiError&) {
    }
  }
  try {
    (void)api::parse_tokenize(body, reads);
  } catch (const api::ApiError&) {
  }
  try {
    (void)api::parse_detokenize(body);
  } catch (const api::ApiError&) {
  }
  return 0;
}
