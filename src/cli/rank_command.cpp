// `mote rank FILE.h5 --target CLASS --control CLASS --top N`: ranks routed
// experts by how much more they fire on the target class, prints a table
// and writes the top ones as a mask file.
#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>

#include "mote/cli/commands.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/io/mask_file.h"
#include "mote/runtime/expert_ranking.h"
#include "mote/util/error.h"

namespace mote {

int run_rank(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi) {
  std::string file, out, policy = "reroute";
  RankingSpec spec;
  po::options_description options("Options");
  options.add_options()
      ("file", po::value(&file), "profile HDF5 file (also the first positional argument)")
      ("target", po::value(&spec.target)->required(), "class whose experts to find (e.g. sensitive)")
      ("control", po::value(&spec.control)->required(), "class to compare against (e.g. neutral)")
      ("top", po::value(&spec.top)->default_value(10), "number of experts to keep (per layer with --per-layer)")
      ("score", po::value(&spec.score)->default_value("freq-diff"),
       "freq-diff (difference of per-token activation frequency) or log-odds (smoothed)")
      ("phase", po::value(&spec.phase)->default_value("all"), "tokens counted: all, prompt or generated")
      ("smoothing", po::value(&spec.smoothing)->default_value(0.5), "pseudo-count of the log-odds score")
      ("per-layer", po::bool_switch(&spec.per_layer), "take the top N of every MoE layer instead of overall")
      ("off-policy", po::value(&policy)->default_value("reroute"), "off-policy written into the mask: reroute, drop or zero")
      ("out", po::value(&out), "mask file to write with the ranked experts switched off");
  po::positional_options_description positional;
  positional.add("file", 1);
  const ParsedOptions parsed = parse_options(args, options, &positional);
  if (parsed.help) {
    if (mpi.rank() == 0) {
      std::cout << "Usage: mote rank FILE.h5 --target CLASS --control CLASS [--top N] [--out MASK.ini]\n\n"
                   "Scores every (MoE layer, routed expert) of a profile by how much more often it fires on the\n"
                   "target class than on the control class, prints the best, and writes them as a mask file\n"
                   "that 'mote generate --mask' and 'mote profile --mask' accept.\n\n"
                << options << "  --config FILE                         job file (INI) with any of the options above\n";
    }
    return 0;
  }
  if (mpi.rank() != 0) return 0;
  if (file.empty()) fail("give the profile file: mote rank FILE.h5 ...");
  if (policy != "reroute" && policy != "drop" && policy != "zero") fail("--off-policy '{}' is not one of reroute, drop, zero", policy);
  std::error_code ec;
  if (!out.empty() && std::filesystem::exists(out, ec) && std::filesystem::equivalent(out, file, ec)) {
    fail("{}: --out is the profile being ranked; the mask would replace it", out);
  }
  const ProfileData data = read_profile_file(file);
  if (!data.masks.empty()) {
    std::string names;
    for (const auto& m : data.masks) names += (names.empty() ? "" : ", ") + m;
    fail("{}: its requests ran under mask sets ({}), so its counts mix steered and unsteered routing; rank a profile run "
         "without masks (an experiment's file cannot be ranked)", file, names);
  }
  const auto ranked = rank_experts(data, spec);

  std::cout << fmt::format("{:>4}  {:>9}  {:>13}  {:>6}  {:>10}  {:>10}  {:>10}\n", "rank", "moe_layer", "decoder_layer",
                           "expert", spec.score, "f_" + spec.target, "f_" + spec.control);
  for (size_t i = 0; i < ranked.size(); ++i) {
    const auto& r = ranked[i];
    std::cout << fmt::format("{:>4}  {:>9}  {:>13}  {:>6}  {:>10.5f}  {:>10.5f}  {:>10.5f}\n", i + 1, r.moe_layer,
                             data.decoder_index[r.moe_layer], r.expert, r.score, r.target_frequency, r.control_frequency);
  }
  if (!out.empty()) {
    std::string text = fmt::format("# {} experts ranked by {} of '{}' over '{}' (phase {}) in {}\n# {}\n[mote]\nlayer-index = moe\noff-policy = {}\n",
                                   ranked.size(), spec.score, spec.target, spec.control, spec.phase, file, command_line, policy);
    for (const auto& r : ranked) text += fmt::format("off = {}:{}\n", r.moe_layer, r.expert);
    std::ofstream f(out);
    if (!f) fail("{}: cannot write", out);
    f << text;
    if (!f) fail("{}: write failed", out);
    std::cout << "wrote " << out << "\n";
  }
  return 0;
}

}  // namespace mote
