// Steering (mask) files and job files' [mote] sections from arbitrary bytes.
#include "fuzz_util.h"
#include "mote/io/mask_file.h"
#include "mote/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mote;
  static const ModelConfig config = load_model_config(std::filesystem::path(MOTE_MODEL_DIR) / "config.json");
  const auto path = fuzz::write_scratch("mask.ini", data, size);
  try {
    const ExpertMask m = read_mask_file(path, config, "fuzz");
    // What was accepted must round-trip through its own description.
    fuzz::write_scratch("again.ini", reinterpret_cast<const uint8_t*>(m.description.data()), m.description.size());
    const ExpertMask again = read_mask_file(fuzz::scratch_file("again.ini"), config, "fuzz");
    if (again.off_bits != m.off_bits || again.on_bits != m.on_bits || again.gains != m.gains) __builtin_trap();
  } catch (const Error&) {
  }
  try {
    (void)read_job_file_mask(path, config, "fuzz");
  } catch (const Error&) {
  }
  return 0;
}
