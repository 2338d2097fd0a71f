// `mote place --profile P.h5 -n N --out placement.json`: a placement that
// balances the tokens each rank's experts expect, from a profile's counts.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>

#include <fmt/format.h>

#include "mote/cli/commands.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/io/h5.h"
#include "mote/io/text_output.h"
#include "mote/runtime/load_placement.h"
#include "mote/runtime/memory_plan.h"
#include "mote/util/error.h"

namespace mote {

int run_place(const std::vector<std::string>& args, const std::string&, MpiSession& mpi) {
  std::string profile_path, out, model, mem;
  std::string coordinators;
  LoadPlacementSpec spec;
  PlanRequest job_shape;  // what --mem-per-rank must hold besides the experts
  po::options_description options("Options");
  // clang-format off
  options.add_options()
      ("profile", input_file(&profile_path), "profile (or generate) HDF5 file whose expert counts give the load")
      ("ranks,n", po::value(&spec.world_size)->default_value(1), "world size (MPI ranks) of the job to place")
      ("coordinators", po::value(&coordinators)->default_value("all"), "coordinators of that job (--coordinators): K or all")
      ("coordinator-experts", po::value(&spec.coordinator_experts)->default_value(true, "true"),
       "whether the coordinators also hold routed experts")
      ("class", po::value(&spec.classes)->composing(), "count only this class's tokens (repeatable; default all classes)")
      ("phase", po::value(&spec.phase)->default_value("all"), "tokens counted: all, prompt or generated")
      ("mem-per-rank", po::value(&mem),
       "memory of one rank (e.g. 480G): each rank gets at most the experts that fit beside what it holds otherwise "
       "(from 'mote plan'); without it every rank holds as many experts as the contiguous rule gives it")
      ("batch-size", po::value(&job_shape.batch_size)->default_value(8), "with --mem-per-rank: the job's --batch-size (KV cache slots)")
      ("context", po::value(&job_shape.context_tokens)->default_value(2048), "with --mem-per-rank: prompt + generated tokens per request")
      ("max-step-tokens", po::value(&job_shape.max_step_tokens)->default_value(2048),
       "with --mem-per-rank: the job's --max-step-tokens (working buffers grow with it)")
      ("model", input_file(&model, "DIR"), "model directory, for --mem-per-rank (default: the one the profile names)")
      ("out", output_file(&out), "placement file to write, for --placement-file");
  // clang-format on
  const auto parsed = parse_command(
      args, options, mpi,
      "Usage: mote place --profile PROFILE.h5 -n N [--coordinators K] [--mem-per-rank SIZE] --out placement.json\n\n"
      "Spreads each MoE layer's routed experts over the ranks that hold experts so that the tokens each\n"
      "rank expects (the profile's counts, for the classes and phase chosen) are balanced: heaviest expert\n"
      "first, each to the least-loaded rank with room. Prints, per MoE layer, the busiest rank's tokens\n"
      "over the mean with the contiguous rule and with the new placement. The file is what\n"
      "'mote generate --placement-file' reads; results do not depend on the placement. Deterministic.\n\n");
  if (!parsed) return 0;
  if (profile_path.empty()) fail("give --profile FILE.h5");
  if (out.empty()) fail("give --out FILE for the placement");
  if (spec.world_size < 1) fail("-n {} must be at least 1", spec.world_size);
  spec.coordinators = parse_coordinators(coordinators);
  const ProfileData profile = read_profile_file(profile_path, "mote place");
  if (!mem.empty()) {
    PlanRequest req = job_shape;
    req.model_dir = model.empty() ? profile.model : model;
    req.world_size = spec.world_size;
    req.coordinators = spec.coordinators;
    req.coordinator_experts = spec.coordinator_experts;
    req.mem_per_rank = parse_byte_size(mem, "--mem-per-rank");
    req.mem_per_rank_text = mem;
    const MemoryPlan plan = plan_memory(req);
    if (plan.config.n_routed_experts != profile.experts ||
        static_cast<int>(plan.config.moe_layers().size()) != profile.moe_layers) {
      fail("{}: the model has {} MoE layers of {} experts, the profile {} of {}", req.model_dir.string(),
           plan.config.moe_layers().size(), plan.config.n_routed_experts, profile.moe_layers, profile.experts);
    }
    uint64_t routed = 0;
    int held = 0;
    for (const auto& r : plan.ranks) {
      routed += r.routed;
      held += r.routed_experts;
    }
    const uint64_t per_expert = routed / std::max(held, 1);
    std::string room;
    for (size_t r = 0; r < plan.ranks.size(); ++r) {
      const uint64_t other = plan.ranks[r].total() - plan.ranks[r].routed;
      spec.capacity.push_back(req.mem_per_rank > other
                                  ? static_cast<int64_t>((req.mem_per_rank - other) / std::max<uint64_t>(per_expert, 1))
                                  : 0);
      room += fmt::format("{}rank {}: {:.1f} MB besides experts, room for {} experts", r ? "; " : "", r,
                          static_cast<double>(other) / 1e6, spec.capacity.back());
    }
    std::cout << fmt::format("--mem-per-rank {} ({:.2f} MB per routed expert): {}\n", mem,
                             static_cast<double>(per_expert) / 1e6, room);
  }
  const LoadPlacement placement = place_by_load(profile, spec);

  std::cout << fmt::format("{} routed experts per MoE layer over {} ranks holding experts ({})\n", profile.experts,
                           placement.holders.size(), [&] {
                             std::string list;
                             for (int r : placement.holders) list += (list.empty() ? "" : ", ") + std::to_string(r);
                             return list;
                           }());
  std::cout << fmt::format("{:>9}  {:>10}  {:>10}\n", "moe_layer", "contiguous", "placed");
  for (int l = 0; l < profile.moe_layers; ++l) {
    std::cout << fmt::format("{:>9}  {:>10.3f}  {:>10.3f}\n", l, placement.before[l], placement.after[l]);
  }
  const auto mean = [](const std::vector<double>& v) {
    return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  };
  std::cout << fmt::format(
      "busiest rank's tokens over the mean, averaged over MoE layers: {:.3f} contiguous, {:.3f} placed\n",
      mean(placement.before), mean(placement.after));

  write_text_output(out, placement.json(), "--out");
  std::cout << "wrote " << out << "\n";
  return 0;
}

}  // namespace mote
