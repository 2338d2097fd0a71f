// config.json from arbitrary bytes.
#include "fuzz_util.h"
#include "mote/io/json_file.h"
#include "mote/model/config.h"
#include "mote/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mote;
  try {
    const ModelConfig c = parse_model_config(parse_json(fuzz::as_text(data, size), "fuzz"), "fuzz");
    (void)c.summary();
    (void)c.attention_scale();
  } catch (const Error&) {
  }
  return 0;
}
