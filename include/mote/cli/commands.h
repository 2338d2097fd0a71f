// Subcommands of the `mote` tool. Each takes its own arguments (after the
// subcommand name) and the full command line for provenance, and returns
// the process exit code.
#pragma once

#include <string>
#include <vector>

#include "mote/cli/options.h"
#include "mote/runtime/job.h"

namespace mote {

class MpiSession;

// `profile` is an fTRI job: the same run, labelled and documented for profiling.
int run_generate(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi,
                 bool profile = false);
// The options of a job, bound to `job` (generate, profile, scan, experiment).
po::options_description job_options(JobOptions& job);
// A job file's [mote] section (its mask): keys accepted in the file only;
// check_job_file_mask() refuses a file with both a section and 'mask ='.
po::options_description job_file_mask_keys();
void check_job_file_mask(const ParsedOptions& parsed);
int run_scan(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_experiment(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_rank(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_inspect(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_diff(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_tokenize(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_place(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_plan(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_serve(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);
int run_random_mask(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi);

}  // namespace mote
