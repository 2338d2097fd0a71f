// Steering (mask) files and job files' [mote] sections from arbitrary bytes,
// with includes: the input up to its first 0xFF byte is the mask file, the
// rest is "inc.ini" beside it, and beside them lie what an include must
// refuse: a FIFO, a link to /dev/zero, a directory and a file over 1 MiB.
// The first part is also read as the text of a server request's mask.
#include <sys/stat.h>

#include <algorithm>

#include "fuzz_util.h"
#include "mote/model/mask_file.h"
#include "mote/util/error.h"

namespace {

std::filesystem::path scratch_dir() {
  static const std::filesystem::path dir = [] {
    const auto d = mote::fuzz::scratch_file("masks");
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d / "dir");
    ::mkfifo((d / "fifo").c_str(), 0600);
    std::filesystem::create_symlink("/dev/zero", d / "zero");
    std::ofstream(d / "big.ini") << "[mote]\n" << std::string((1u << 20) + 1, '#');
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mote;
  static const ModelConfig config = load_model_config(std::filesystem::path(MOTE_MODEL_DIR) / "config.json");
  const auto dir = scratch_dir();
  const uint8_t* split = std::find(data, data + size, 0xFF);
  const auto path = dir / "mask.ini";
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data), split - data);
  const uint8_t* rest = split == data + size ? split : split + 1;
  std::ofstream(dir / "inc.ini", std::ios::binary).write(reinterpret_cast<const char*>(rest), data + size - rest);
  try {
    const ExpertMask m = read_mask_file(path, config, "fuzz");
    // What was accepted must round-trip through its own description.
    const auto again_path = dir / "again.ini";
    std::ofstream(again_path, std::ios::binary) << m.description;
    const ExpertMask again = read_mask_file(again_path, config, "fuzz");
    if (again.off_bits != m.off_bits || again.on_bits != m.on_bits || again.gains != m.gains) __builtin_trap();
  } catch (const Error&) {
  }
  try {
    (void)read_job_file_mask(path, config, "fuzz");
  } catch (const Error&) {
  }
  // The same bytes as a server's request gives them (mask_ini): what a
  // file gives, or an error; never a file read.
  try {
    (void)parse_mask_text(std::string(reinterpret_cast<const char*>(data), static_cast<size_t>(split - data)), config,
                          "fuzz", "mask_ini");
  } catch (const Error&) {
  }
  return 0;
}
