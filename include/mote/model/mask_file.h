// Steering (mask) files: INI in Boost.Program_options syntax, a [mote]
// section with
//
//   layer-index = moe | decoder    how the entries below number layers (required with entries)
//   off = L:E                      switch expert E of layer L off (repeatable)
//   on = L:E                       force it on (repeatable)
//   gain = L:E:G                   scale its weighted output by G >= 0 (repeatable)
//   off-policy = reroute | drop | zero      (default reroute)
//   on-policy = natural | max               (default natural)
//   shared-gain = G                scale the shared expert (0 switches it off)
//   include = FILE                 add the entries of another mask file (repeatable;
//                                  a relative FILE is relative to the including file)
//
// Mask and job files are regular files of at most 1 MiB; a file with no
// [mote] entries is an error. Every error names the file, the line and the
// entry, and quotes at most a short excerpt of what it could not read.
#pragma once

#include <boost/program_options.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mote/model/config.h"
#include "mote/model/expert_mask.h"

namespace mote {

// The keys of a mask file's [mote] section, as "mote.<key>": a job file's
// [mote] section takes the same keys.
boost::program_options::options_description mask_file_options();

// Reads a mask file; any key outside [mote] is an error. The file and every
// file it includes are noted as inputs of the command (io/file_guard.h).
ExpertMask read_mask_file(const std::filesystem::path& path, const ModelConfig& config, const std::string& name);

// A mask given as text in mask-file syntax (a server's request carries
// one): the same keys and checks, but no include. `where` names it in errors.
ExpertMask parse_mask_text(const std::string& text, const ModelConfig& config, const std::string& name,
                           const std::string& where);

// Reads the [mote] section of a job file (its other keys belong to the
// command); nullopt when it has no [mote] keys.
std::optional<ExpertMask> read_job_file_mask(const std::filesystem::path& path, const ModelConfig& config,
                                             const std::string& name);

// The mask in mask-file syntax (MoE-layer numbering), `header` as comments.
// Its off entries come in `off_order` (MoE layer, expert) first, when
// given (a ranking, best first, so that the file's first N lines are its
// top N), then in layer order.
std::string format_mask_file(const ExpertMask& mask, const std::string& header = "",
                             const std::vector<std::pair<int, int>>& off_order = {});

}  // namespace mote
