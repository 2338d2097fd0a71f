// Small text outputs (mask files, placements): written beside the final
// path and renamed over it when complete, so a failed write never leaves a
// half-written file or destroys the one that was there. The path must be
// new or a regular file (or a link to one): a directory, device, FIFO or
// socket is refused, never replaced.
#pragma once

#include <filesystem>
#include <string>

namespace mote {

// Refuses, before any work, a path write_text_output() would refuse, or
// one in a directory that does not exist or cannot be written.
void check_text_output(const std::filesystem::path& path, const char* what);
// `what` names the output in errors ("--mask-out").
void write_text_output(const std::filesystem::path& path, const std::string& text, const char* what);

}  // namespace mote
