// `mote plan`: the memory a job needs per rank, before any weights are read
// (or downloaded): from config.json and the safetensors headers, or from
// config.json and the index alone.
#include <iostream>

#include "mote/cli/commands.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/runtime/memory_plan.h"
#include "mote/util/error.h"

namespace mote {

int run_plan(const std::vector<std::string>& args, const std::string&, MpiSession& mpi) {
  PlanRequest req;
  std::string model = default_model_dir(), mem;
  bool json = false;
  po::options_description options("Options");
  options.add_options()
      ("model", po::value(&model)->default_value(default_model_dir()),
       "Hugging Face model directory; config.json and model.safetensors.index.json are enough")
      ("ranks,n", po::value(&req.world_size)->default_value(1), "world size (MPI ranks) of the job")
      ("placement", po::value(&req.placement)->default_value("contiguous"), "contiguous or round-robin, as for 'mote generate'")
      ("placement-file", po::value(&req.placement_file), "JSON placement file; overrides --placement")
      ("coordinator-experts", po::value(&req.coordinator_experts)->default_value(true, "true"), "whether rank 0 also holds routed experts")
      ("batch-size", po::value(&req.batch_size)->default_value(8), "requests decoded together (KV cache slots)")
      ("context", po::value(&req.context_tokens)->default_value(2048), "prompt + generated tokens per request")
      ("max-step-tokens", po::value(&req.max_step_tokens)->default_value(2048), "prompt tokens fed per step at most")
      ("mem-per-rank", po::value(&mem), "memory of one rank (e.g. 480G): ranks that need more are flagged and the exit status is 3")
      ("json", po::bool_switch(&json), "print the plan as JSON");
  const ParsedOptions parsed = parse_options(args, options);
  if (parsed.help) {
    if (mpi.rank() == 0) {
      std::cout << "Usage: mote plan --model DIR -n N [--placement RULE] [--mem-per-rank SIZE] [--json]\n\n"
                   "Prints what each rank of a job will hold: weight bytes by kind (embeddings, attention, dense layers,\n"
                   "router and norms, shared experts, routed experts), the KV cache and working buffers, and the total.\n"
                   "Reads only config.json, model.safetensors.index.json and the safetensors headers, so it works on a\n"
                   "directory holding just the config and the index, before downloading the weights. Exit status 3\n"
                   "when a rank exceeds --mem-per-rank.\n\n"
                << options << "  --config FILE                         job file (INI) with any of the options above\n";
    }
    return 0;
  }
  if (mpi.rank() != 0) return 0;
  if (req.world_size < 1) fail("-n {} must be at least 1", req.world_size);
  req.model_dir = model;
  if (!mem.empty()) req.mem_per_rank = parse_byte_size(mem, "--mem-per-rank");
  const MemoryPlan plan = plan_memory(req);
  std::cout << (json ? format_plan_json(plan) : format_plan_text(plan));
  return plan.over_limit.empty() ? 0 : 3;
}

}  // namespace mote
