// tokenizer.json from arbitrary bytes, then encoding a fixed text with it.
#include "fuzz_util.h"
#include "mote/tokenizer/tokenizer.h"
#include "mote/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mote;
  try {
    const Tokenizer t = Tokenizer::from_json_text(fuzz::as_text(data, size), "fuzz");
    const auto ids = t.encode("Hello wörld 123 <｜User｜> ok", true);
    (void)t.decode(ids);
  } catch (const Error&) {
  }
  return 0;
}
