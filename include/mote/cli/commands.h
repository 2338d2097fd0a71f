// Subcommands of the `mote` tool. Each takes its own arguments (after the
// subcommand name) and the full command line for provenance, and returns
// the process exit code.
#pragma once

#include <hdf5.h>

#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace mote {

class MpiSession;
struct PromptSpec;

// Called on rank 0 when a generation job has finished, before its HDF5 file
// (root group `root`, or -1 without --out) is committed: the requests and,
// per request, the generated text up to (not including) a final EOS.
// errors[i] is non-empty for a request that failed without running.
using JobFinish = std::function<void(hid_t root, const std::vector<PromptSpec>& requests, const std::vector<std::string>& texts,
                                     const std::vector<std::string>& errors)>;

// `profile` is an fTRI job: the same run, labelled and documented for profiling.
int run_generate(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi, bool profile = false,
                 const JobFinish& finish = {});
// The options of a generation job, as --help lists them (for commands
// that pass them through).
void print_generation_options(std::ostream& out);
int run_experiment(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_rank(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_inspect(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_diff(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_tokenize(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_plan(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_random_mask(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);

}  // namespace mote
