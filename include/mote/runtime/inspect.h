// What a file holds, for the questions a researcher asks without writing
// h5py: `mote inspect FILE.h5` (job, model, masks, classes, counts, top
// experts per class), `mote inspect MODEL_DIR` (family, layers, experts,
// memory per rank) and `mote diff A.h5 B.h5` (per-expert change between two
// profiles).
#pragma once

#include <filesystem>
#include <string>

namespace mote {

std::string describe_result_file(const std::filesystem::path& path, int top);
std::string describe_model_dir(const std::filesystem::path& dir, int world_size);
// Per class both files hold: the experts whose activation frequency
// (tokens routed / token positions, all phases) changed most from A to B.
std::string diff_profiles(const std::filesystem::path& a, const std::filesystem::path& b, int top);

}  // namespace mote
