// `mote random-mask`: writes a mask file with N random experts switched off,
// the control condition of a MoTE experiment.
#include <fstream>
#include <iostream>

#include "mote/cli/commands.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/io/text_output.h"
#include "mote/model/loaded_model.h"
#include "mote/model/mask_file.h"
#include "mote/runtime/random_mask.h"
#include "mote/util/error.h"

namespace mote {

int run_random_mask(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi) {
  std::string model_dir, exclude, like, out, policy = "reroute", mode = "off", on_policy = "natural";
  int count = 0;
  uint64_t seed = 0;
  po::options_description options("Options");
  // clang-format off
  options.add_options()
      ("model", input_file(&model_dir, "DIR")->default_value(default_model_dir()), "model directory (for its layer and expert counts)")
      ("count", po::value(&count), "number of experts to switch off or force on (required unless --like)")
      ("mode", po::value(&mode)->default_value("off"),
       "off: switch the experts off; on: force them on (at most top-k per MoE layer, within topk_group of the router's groups)")
      ("on-policy", po::value(&on_policy)->default_value("natural"), "on-policy written into the mask with --mode on: natural or max")
      ("seed", po::value(&seed)->default_value(0), "random seed")
      ("exclude", input_file(&exclude), "mask file whose experts are never chosen (e.g. the target mask)")
      ("like", input_file(&like), "mask file whose number of off (with --mode on: on) experts per MoE layer to match")
      ("off-policy", po::value(&policy)->default_value("reroute"), "off-policy written into the mask: reroute, drop or zero")
      ("out", output_file(&out)->required(), "mask file to write");
  // clang-format on
  const auto parsed = parse_command(
      args, options, mpi,
      "Usage: mote random-mask --out FILE (--count N | --like MASK) [--mode off|on] [--exclude MASK] [--seed S]\n\n"
      "Writes a mask file that switches off (or forces on) randomly chosen routed experts: the control\n"
      "condition of a MoTE experiment. The same seed gives the same mask on every machine.\n\n");
  if (!parsed) return 0;
  check_text_output(out, "--out");
  if (parsed->values.count("count") == 0 && like.empty()) fail("give --count N or --like MASK");
  if (parsed->values.count("count") > 0 && !like.empty()) fail("give --count N or --like MASK, not both");
  const ModelConfig config = read_model_dir_config(model_dir);
  std::optional<ExpertMask> exclude_mask, like_mask;
  if (!exclude.empty()) exclude_mask = read_mask_file(exclude, config, "exclude");
  if (!like.empty()) like_mask = read_mask_file(like, config, "like");
  RandomMaskSpec spec{count, seed, exclude_mask ? &*exclude_mask : nullptr, like_mask ? &*like_mask : nullptr,
                      OffPolicy::Reroute};
  const auto off_policy = parse_off_policy(policy);
  if (!off_policy) fail("--off-policy '{}' is not one of reroute, drop, zero", policy);
  if (mode != "off" && mode != "on") fail("--mode '{}' is not one of off, on", mode);
  const auto forced_policy = parse_on_policy(on_policy);
  if (!forced_policy) fail("--on-policy '{}' is not one of natural, max", on_policy);
  spec.off_policy = *off_policy;
  spec.on = mode == "on";
  spec.on_policy = *forced_policy;
  const ExpertMask mask = random_mask(config, spec, "random");
  write_text_output(out, format_mask_file(mask, "random mask: " + command_line), "--out");
  std::cout << "wrote " << out << ": " << (spec.on ? mask.count_on() : mask.count_off()) << " experts "
            << (spec.on ? "on" : "off") << "\n";
  return 0;
}

}  // namespace mote
