// The bundled tokenizer on arbitrary bytes: invalid UTF-8 is an Error;
// valid text must decode back to itself.
#include <filesystem>

#include "fuzz_util.h"
#include "mote/tokenizer/tokenizer.h"
#include "mote/util/error.h"
#include "mote/util/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mote;
  static const Tokenizer tokenizer = Tokenizer::load(MOTE_MODEL_DIR);
  const std::string_view text = fuzz::as_text(data, size);
  try {
    const auto ids = tokenizer.encode(text, false);
    if (tokenizer.decode(ids) != text) __builtin_trap();
  } catch (const Error&) {
    if (!find_invalid_utf8(text)) __builtin_trap();  // valid UTF-8 must encode
  }
  return 0;
}
