// `mote rank FILE.h5 --target CLASS --control CLASS --top N`: ranks routed
// experts by how much more they fire on the target class (a profile), or
// `mote rank --by effect SCAN.h5`: by their knockout effect (a scan); prints
// a table and writes the top ones as a mask file.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>

#include "mote/cli/commands.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/io/text_output.h"
#include "mote/model/mask_file.h"
#include "mote/results/scan_file.h"
#include "mote/runtime/expert_ranking.h"
#include "mote/util/error.h"

namespace mote {

int run_rank(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi) {
  std::string file, out, policy = "reroute", by = "frequency";
  RankingSpec spec;
  po::options_description options("Options");
  // clang-format off
  options.add_options()
      ("file", input_file(&file), "profile or scan HDF5 file (also the first positional argument)")
      ("by", po::value(&by)->default_value("frequency"),
       "frequency: how much more often an expert fires on --target than on --control (a profile); effect: how much "
       "switching it off lowers the scan's metric (a file of 'mote scan')")
      ("target", po::value(&spec.target), "class whose experts to find (e.g. sensitive)")
      ("control", po::value(&spec.control), "class to compare against (e.g. neutral)")
      ("top", po::value(&spec.top)->default_value(10), "number of experts to keep (per layer with --per-layer)")
      ("score", po::value(&spec.score)->default_value("freq-diff"),
       "freq-diff (difference of per-token activation frequency), log-odds (smoothed) or gate-diff (difference of the "
       "gate weight per token)")
      ("phase", po::value(&spec.phase)->default_value("all"),
       "tokens counted: all, prompt, generated, or last-prompt (each request's last prompt token, where the answer "
       "starts; needs a profile run with --trace)")
      ("smoothing", po::value(&spec.smoothing)->default_value(0.5), "pseudo-count of the log-odds score")
      ("per-layer", po::bool_switch(&spec.per_layer), "take the top N of every MoE layer instead of overall")
      ("off-policy", po::value(&policy)->default_value("reroute"), "off-policy written into the mask: reroute, drop or zero")
      ("out", output_file(&out), "mask file to write with the ranked experts switched off");
  // clang-format on
  po::positional_options_description positional;
  positional.add("file", 1);
  const auto parsed =
      parse_command(args, options, mpi,
                    "Usage: mote rank FILE.h5 --target CLASS --control CLASS [--top N] [--out MASK.ini]\n"
                    "       mote rank --by effect SCAN.h5 [--top N] [--out MASK.ini]\n\n"
                    "Scores every (MoE layer, routed expert) of a profile by how much more often it fires on the\n"
                    "target class than on the control class, or of a scan by how much switching it off lowers the\n"
                    "scan's metric; prints the best, and writes them as a mask file that 'mote generate --mask',\n"
                    "'mote profile --mask' and 'mote experiment --target-mask' accept. Frequency and effect often\n"
                    "disagree: an expert can fire with a behaviour without causing it (docs/ftri.md).\n\n",
                    &positional);
  if (!parsed) return 0;
  if (file.empty()) fail("give the profile file: mote rank FILE.h5 ...");
  if (!parse_off_policy(policy)) fail("--off-policy '{}' is not one of reroute, drop, zero", policy);
  if (!out.empty()) check_text_output(out, "--out");
  std::vector<RankedExpert> ranked;
  std::vector<int32_t> decoder_index;
  int moe_layers = 0, experts = 0;
  std::string what;
  if (by == "effect") {
    if (!spec.target.empty() || !spec.control.empty())
      fail("--target and --control rank a profile; --by effect ranks a scan");
    const ScanData scan = read_scan_file(file);
    for (int l = 0; l < scan.moe_layers; ++l) {
      for (int e = 0; e < scan.experts; ++e) {
        const double v = scan.effect[static_cast<size_t>(l) * scan.experts + e];
        if (!std::isnan(v))
          ranked.push_back({.moe_layer = l,
                            .expert = e,
                            .score = v,
                            .score_sd = scan.effect_sd[static_cast<size_t>(l) * scan.experts + e]});
      }
    }
    if (ranked.empty()) fail("{}: the scan holds no effect (every entry of /scan/effect is NaN)", file);
    ranked = best_of(std::move(ranked), spec.top, spec.per_layer);
    decoder_index = scan.decoder_index;
    moe_layers = scan.moe_layers;
    experts = scan.experts;
    what = fmt::format("knockout effect on {} of {}", scan.metric, scan.metric_spec);
    std::cout << fmt::format("{:>4}  {:>9}  {:>13}  {:>6}  {:>12}  {:>12}\n", "rank", "moe_layer", "decoder_layer",
                             "expert", "effect", "effect_sd");
    for (size_t i = 0; i < ranked.size(); ++i) {
      const auto& r = ranked[i];
      std::cout << fmt::format("{:>4}  {:>9}  {:>13}  {:>6}  {:>12.6f}  {:>12.6f}\n", i + 1, r.moe_layer,
                               decoder_index[static_cast<size_t>(r.moe_layer)], r.expert, r.score, r.score_sd);
    }
  } else if (by == "frequency") {
    if (spec.target.empty() || spec.control.empty())
      fail("give --target CLASS and --control CLASS (or --by effect for a scan)");
    ProfileData data = read_profile_file(file, "mote rank");
    if (!data.masks.empty()) {
      std::string names;
      for (const auto& m : data.masks) names += (names.empty() ? "" : ", ") + m;
      fail(
          "{}: its requests ran under mask sets ({}), so its counts mix steered and unsteered routing; rank a profile "
          "run "
          "without masks (an experiment's file cannot be ranked)",
          file, names);
    }
    if (spec.phase == "last-prompt") read_last_prompt_routing(file, data);
    ranked = rank_experts(data, spec);
    decoder_index = data.decoder_index;
    moe_layers = data.moe_layers;
    experts = data.experts;
    what = fmt::format("{} of '{}' over '{}' (phase {})", spec.score, spec.target, spec.control, spec.phase);
    std::cout << fmt::format("{:>4}  {:>9}  {:>13}  {:>6}  {:>10}  {:>10}  {:>10}\n", "rank", "moe_layer",
                             "decoder_layer", "expert", spec.score,
                             (spec.score == "gate-diff" ? "g_" : "f_") + spec.target,
                             (spec.score == "gate-diff" ? "g_" : "f_") + spec.control);
    for (size_t i = 0; i < ranked.size(); ++i) {
      const auto& r = ranked[i];
      std::cout << fmt::format("{:>4}  {:>9}  {:>13}  {:>6}  {:>10.5f}  {:>10.5f}  {:>10.5f}\n", i + 1, r.moe_layer,
                               decoder_index[static_cast<size_t>(r.moe_layer)], r.expert, r.score, r.target_frequency,
                               r.control_frequency);
    }
  } else {
    fail("--by '{}' is not one of frequency, effect", by);
  }
  if (!out.empty()) {
    ExpertMask mask(moe_layers, experts);
    mask.off_policy = *parse_off_policy(policy);
    std::vector<std::pair<int, int>> order;
    for (const auto& r : ranked) {
      mask.set_off(r.moe_layer, r.expert);
      order.emplace_back(r.moe_layer, r.expert);
    }
    const std::string header =
        fmt::format("{} experts ranked by {} in {}, best first\n{}", ranked.size(), what, file, command_line);
    write_text_output(out, format_mask_file(mask, header, order), "--out");
    std::cout << "wrote " << out << "\n";
  }
  return 0;
}

}  // namespace mote
