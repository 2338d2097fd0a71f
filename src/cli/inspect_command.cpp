// `mote inspect FILE.h5 | MODEL_DIR` and `mote diff A.h5 B.h5`.
#include <iostream>

#include "mote/cli/commands.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/runtime/inspect.h"
#include "mote/util/error.h"

namespace mote {

int run_inspect(const std::vector<std::string>& args, const std::string&, MpiSession& mpi) {
  std::string target;
  int top = 5, ranks = 1;
  po::options_description options("Options");
  // clang-format off
  options.add_options()
      ("path", input_file(&target, "PATH"), "a mote HDF5 file or a model directory (also the first positional argument)")
      ("top", po::value(&top)->default_value(5), "experts listed per class")
      ("ranks,n", po::value(&ranks)->default_value(1), "for a model directory: the world size to plan memory for");
  // clang-format on
  po::positional_options_description positional;
  positional.add("path", 1);
  const auto parsed =
      parse_command(args, options, mpi,
                    "Usage: mote inspect FILE.h5 [--top N]\n       mote inspect MODEL_DIR [-n N]\n\n"
                    "For a file written by mote: its job, model, masks, classes with their token totals, and the\n"
                    "experts that fire most in each class. For a model directory: its family, layers, experts and\n"
                    "what each of N ranks would hold (as 'mote plan').\n\n",
                    &positional);
  if (!parsed) return 0;
  if (target.empty()) fail("give a file or a model directory: mote inspect PATH");
  if (top < 0) fail("--top {} must not be negative", top);
  std::error_code ec;
  std::cout << (std::filesystem::is_directory(target, ec) ? describe_model_dir(target, ranks)
                                                          : describe_result_file(target, top));
  return 0;
}

int run_diff(const std::vector<std::string>& args, const std::string&, MpiSession& mpi) {
  std::vector<std::string> files;
  int top = 10;
  po::options_description options("Options");
  // clang-format off
  options.add_options()
      ("files", input_file(&files), "the two profile files A and B (positional)")
      ("top", po::value(&top)->default_value(10), "experts listed per class");
  // clang-format on
  po::positional_options_description positional;
  positional.add("files", 2);
  const auto parsed =
      parse_command(args, options, mpi,
                    "Usage: mote diff A.h5 B.h5 [--top N]\n\n"
                    "Compares two profiles of the same model class by class: the experts whose activation frequency\n"
                    "changed most from A to B, with their token counts, and the summed change per class.\n\n",
                    &positional);
  if (!parsed) return 0;
  if (files.size() != 2) fail("give two profile files: mote diff A.h5 B.h5");
  if (top < 0) fail("--top {} must not be negative", top);
  std::cout << diff_profiles(files[0], files[1], top);
  return 0;
}

}  // namespace mote
