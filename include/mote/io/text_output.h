// Small text outputs (mask files, placements, tables): written beside the
// final path and renamed over it when complete, so a failed write never
// leaves a half-written file or destroys the one that was there. The path
// goes through the file guard (io/file_guard.h): never an input of the
// command, another of its outputs, a directory, device, FIFO, socket or a
// link to one or to nothing.
#pragma once

#include <filesystem>
#include <string>

namespace mote {

// Refuses, before any work, a path write_text_output() would refuse, and
// reserves it for this output (claim_output()).
void check_text_output(const std::filesystem::path& path, const char* what);
// `what` names the output in errors ("--mask-out").
void write_text_output(const std::filesystem::path& path, const std::string& text, const char* what);

}  // namespace mote
