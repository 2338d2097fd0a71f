// Chat templates from arbitrary bytes, parsed and rendered with a small
// conversation under tight bounds: errors are fine, crashes, hangs and
// unbounded memory are not.
#include <nlohmann/json.hpp>

#include "mote/jinja/template.h"
#include "mote/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mote::jinja;
  static const nlohmann::ordered_json messages = nlohmann::ordered_json::parse(
      R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <think>x</think>\n"},
          {"role": "assistant", "content": "Hello.", "reasoning_content": "r"}, {"role": "user", "content": "Bye"}])");
  try {
    const Template t = Template::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.jinja");
    RenderOptions options;
    options.max_output_bytes = 1 << 20;
    options.max_steps = 200000;
    (void)t.render(Dict{{"messages", Value::from_json(messages)},
                        {"add_generation_prompt", Value::from(true)},
                        {"bos_token", Value::from("<s>")},
                        {"eos_token", Value::from("</s>")}},
                   options);
  } catch (const mote::Error&) {
  }
  return 0;
}
