// The readers of mote's own HDF5 files (checkpoint parts for --resume,
// profiles and their routing traces for 'mote rank', scans for 'mote rank
// --by effect') on arbitrary bytes.
#include "fuzz_util.h"
#include "mote/results/profile_file.h"
#include "mote/results/scan_file.h"
#include "mote/runtime/checkpoint.h"
#include "mote/util/error.h"
#include "mote/util/hash.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mote;
  h5_silence_errors();
  const auto dir = fuzz::scratch_file("ckpt");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "job-fingerprint.txt") << "fuzz";
  std::ofstream(dir / "part-000000.h5", std::ios::binary)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  // A summary that matches, so that the HDF5 readers behind the check are fuzzed too.
  const uint64_t h = fnv1a(kFnv1aBasis, std::string_view(reinterpret_cast<const char*>(data), size));
  std::ofstream(dir / "part-000000.h5.sum") << fmt::format("mote-checkpoint-part {} {:016x}\n", size, h);
  try {
    const Checkpoint checkpoint(dir, "fuzz", 1);
    (void)checkpoint.load();
  } catch (const Error&) {
  }
  try {
    ProfileData profile = read_profile_file(dir / "part-000000.h5");
    read_last_prompt_routing(dir / "part-000000.h5", profile);
  } catch (const Error&) {
  }
  try {
    (void)read_scan_file(dir / "part-000000.h5");
  } catch (const Error&) {
  }
  std::filesystem::remove_all(dir);
  return 0;
}
