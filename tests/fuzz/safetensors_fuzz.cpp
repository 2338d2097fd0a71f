// Safetensors headers and shard indexes from arbitrary bytes.
#include "fuzz_util.h"
#include "mote/io/json_file.h"
#include "mote/io/safetensors.h"
#include "mote/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mote;
  try {
    const auto tensors = parse_safetensors({reinterpret_cast<const std::byte*>(data), size}, "fuzz", nullptr);
    for (const auto& [name, view] : tensors) {
      // Every accepted tensor must lie inside the input.
      if (view.data < reinterpret_cast<const std::byte*>(data) ||
          view.data + view.nbytes > reinterpret_cast<const std::byte*>(data) + size) {
        __builtin_trap();
      }
    }
  } catch (const Error&) {
  }
  // The same bytes as a shard index beside no shards.
  const auto dir = fuzz::scratch_file("index-dir");
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "model.safetensors.index.json", std::ios::binary)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  try {
    WeightStore::open_model_dir(dir);
  } catch (const Error&) {
  }
  std::filesystem::remove_all(dir);
  return 0;
}
