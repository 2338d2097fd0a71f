// Subcommands of the `mote` tool. Each takes its own arguments (after the
// subcommand name) and the full command line for provenance, and returns
// the process exit code.
#pragma once

#include <string>
#include <vector>

namespace mote {

class MpiSession;

// `profile` is an fTRI job: the same run, labelled and documented for profiling.
int run_generate(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi, bool profile = false);
int run_rank(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_random_mask(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);

}  // namespace mote
