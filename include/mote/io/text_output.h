// Small text outputs (mask files, placements): written beside the final
// path and renamed over it when complete, so a failed write never leaves a
// half-written file or destroys the one that was there. The path must be
// new or a regular file (or a link to one): a directory, device, FIFO or
// socket is refused, never replaced.
#pragma once

#include <filesystem>
#include <string>

namespace mote {

// `what` names the output in errors ("--mask-out").
void write_text_output(const std::filesystem::path& path, const std::string& text, const char* what);

}  // namespace mote
