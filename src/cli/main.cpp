// The `mote` tool: `mote <command> [options]`.
#include <hdf5.h>

#include <iostream>
#include <string>
#include <vector>

#include "mote/cli/commands.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/util/error.h"
#include "mote/util/stop_signal.h"

namespace {

void print_usage() {
  std::cout
      << "mote " MOTE_VERSION
         ": expert-parallel Mixture-of-Experts runtime for fTRI profiling and MoTE steering\n\n"
         "Usage: mote <command> [options]     (mote <command> --help for the options of one)\n\n"
         "Commands:\n"
         "  generate      generate text for a prompt file, optionally steered by MoTE masks; HDF5 output\n"
         "  profile       fTRI profiling: count which routed experts fire per prompt class into HDF5\n"
         "  serve         an OpenAI-compatible HTTP server; each request may name its own mask set\n"
         "  experiment    a behaviour under no mask, a target mask and K random masks of the same size\n"
         "  scan          causal fTRI: switch experts off one at a time and measure a behaviour's change\n"
         "  rank          rank experts of a profile (target vs control class) or of a scan; write the top as a mask\n"
         "  random-mask   write a mask file with random experts off (the control of a MoTE experiment)\n"
         "  plan          memory per rank of a job (weights by kind, KV cache, buffers) before loading\n"
         "  place         a placement balancing each rank's expected expert load, from a profile\n"
         "  inspect       what a mote HDF5 file or a model directory holds\n"
         "  diff          per-expert change of activation frequency between two profiles\n"
         "  tokenize      the token ids a job would feed the model, one JSON line per input line\n";
}

}  // namespace

int main(int argc, char** argv) {
  // libhdf5 1.10 closes at exit whatever files are still open, and crashes
  // on one whose write failed (a full disk). mote closes every file it
  // writes itself, so the library's own shutdown is left out: a failed
  // write ends with its error and status 1, never a segfault.
  H5dont_atexit();
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" || std::string(argv[1]) == "help") {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  if (command == "--version") {
    std::cout << "mote " MOTE_VERSION "\n";
    return 0;
  }
  const std::vector<std::string> args(argv + 2, argv + argc);
  const std::string command_line = mote::joined_command_line(argc, argv);
  mote::MpiSession mpi(&argc, &argv);
  mote::install_stop_handlers();
  // Before the job starts every rank sees the same options and fails the
  // same way: rank 0 speaks for all and every rank exits. Once it has
  // started, a failing rank names itself and ends the whole job.
  const auto report = [&](const char* kind, const char* what, int code) {
    if (mpi.job_started && mpi.size() > 1) {
      std::cerr << "mote " << command << ": " << kind << " on rank " << mpi.rank() << ": " << what << std::endl;
      mpi.abort(code);
    }
    if (mpi.rank() == 0) std::cerr << "mote " << command << ": " << kind << ": " << what << std::endl;
    return code;
  };
  try {
    if (command == "generate") return mote::run_generate(args, command_line, mpi);
    if (command == "profile") return mote::run_generate(args, command_line, mpi, true);
    if (command == "random-mask") return mote::run_random_mask(args, command_line, mpi);
    if (command == "scan") return mote::run_scan(args, command_line, mpi);
    if (command == "rank") return mote::run_rank(args, command_line, mpi);
    if (command == "experiment") return mote::run_experiment(args, command_line, mpi);
    if (command == "plan") return mote::run_plan(args, command_line, mpi);
    if (command == "place") return mote::run_place(args, command_line, mpi);
    if (command == "inspect") return mote::run_inspect(args, command_line, mpi);
    if (command == "diff") return mote::run_diff(args, command_line, mpi);
    if (command == "tokenize") return mote::run_tokenize(args, command_line, mpi);
    if (command == "serve") return mote::run_serve(args, command_line, mpi);
    if (mpi.rank() == 0) std::cerr << "mote: unknown command '" << command << "' (run 'mote --help' for the list)\n";
    return 2;
  } catch (const mote::EarlyExit& e) {
    return e.code;
  } catch (const mote::Stopped& e) {
    const int code = 128 + e.signal;
    const std::string what =
        std::string("stopped by ") + mote::signal_name(e.signal) + " while " + e.phase + "; nothing was written";
    // Other ranks may be waiting for this one in a collective call.
    if (mpi.size() > 1) {
      std::cerr << "mote " << command << ": rank " << mpi.rank() << ": " << what << std::endl;
      mpi.abort(code);
    }
    std::cerr << "mote " << command << ": " << what << std::endl;
    return code;
  } catch (const mote::Error& e) {
    return report("error", e.what(), 1);
  } catch (const std::exception& e) {
    return report("internal error", e.what(), 70);
  }
}
