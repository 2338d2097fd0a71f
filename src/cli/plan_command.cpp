// `mote plan`: the memory a job needs per rank, before any weights are read
// (or downloaded): from config.json and the safetensors headers, or from
// config.json and the index alone.
#include <cmath>
#include <iostream>

#include "mote/cli/commands.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/runtime/memory_plan.h"
#include "mote/runtime/throughput_model.h"
#include "mote/util/error.h"

namespace mote {

int run_plan(const std::vector<std::string>& args, const std::string&, MpiSession& mpi) {
  PlanRequest req;
  ThroughputRequest speed;
  std::string model = default_model_dir(), mem, wire = "f32", coordinators;
  bool json = false;
  po::options_description options("Options");
  // clang-format off
  options.add_options()
      ("model", input_file(&model, "DIR")->default_value(default_model_dir()),
       "Hugging Face model directory; config.json and model.safetensors.index.json are enough")
      ("ranks,n", po::value(&req.world_size)->default_value(1), "world size (MPI ranks) of the job")
      ("coordinators", po::value(&coordinators)->default_value("all"), "coordinators of the job (--coordinators): K or all")
      ("placement", po::value(&req.placement)->default_value("contiguous"), "contiguous or round-robin, as for 'mote generate'")
      ("placement-file", input_file(&req.placement_file), "JSON placement file; overrides --placement")
      ("coordinator-experts", po::value(&req.coordinator_experts)->default_value(true, "true"), "whether the coordinators also hold routed experts")
      ("batch-size", po::value(&req.batch_size)->default_value(8), "requests decoded together (KV cache slots)")
      ("context", po::value(&req.context_tokens)->default_value(2048), "prompt + generated tokens per request")
      ("max-step-tokens", po::value(&req.max_step_tokens)->default_value(2048), "prompt tokens fed per step at most")
      ("mem-per-rank", po::value(&mem), "memory of one rank (e.g. 480G): ranks that need more are flagged and the exit status is 3")
      ("json", po::bool_switch(&json), "print the plan as JSON")
      ("gemm-gflops", po::value(&speed.node.gemm_gflops),
       "throughput model: product rate of one rank on batched rows (GFLOP/s); with the three below it predicts speed")
      ("bandwidth-gbs", po::value(&speed.node.bandwidth_gbs), "throughput model: read bandwidth of one rank (GB/s)")
      ("latency-us", po::value(&speed.node.latency_us)->default_value(0), "throughput model: one message between ranks (us)")
      ("network-gbs", po::value(&speed.node.network_gbs), "throughput model: network bandwidth of one rank, each way (GB/s)")
      ("prompt-tokens", po::value(&speed.prompt_tokens)->default_value(512), "throughput model: mean prompt length")
      ("new-tokens", po::value(&speed.new_tokens)->default_value(1), "throughput model: tokens generated per request")
      ("load-imbalance", po::value(&speed.load_imbalance)->default_value(1.0, "1"),
       "throughput model: busiest expert rank's tokens over the mean ('mote place' prints it for a profile)")
      ("wire-dtype", po::value(&wire)->default_value("f32"), "throughput model: f32 or bf16 hidden states on the wire")
      ("ranks-per-node", po::value(&speed.ranks_per_node)->default_value(1), "throughput model: ranks sharing one node")
      ("threads", po::value(&speed.threads_per_rank)->default_value(1), "throughput model: compute threads per rank")
      ("node-cores", po::value(&speed.node_cores)->default_value(0),
       "throughput model: cores of one node, when ranks x threads oversubscribe them (0: never oversubscribed)");
  // clang-format on
  const auto parsed = parse_command(
      args, options, mpi,
      "Usage: mote plan --model DIR -n N [--placement RULE] [--mem-per-rank SIZE] [--json]\n\n"
      "Prints what each rank of a job will hold: weight bytes by kind (embeddings, attention, dense layers,\n"
      "router and norms, shared experts, routed experts), the KV cache and working buffers, and the total.\n"
      "Reads only config.json, model.safetensors.index.json and the safetensors headers, so it works on a\n"
      "directory holding just the config and the index, before downloading the weights. Exit status 3\n"
      "when a rank exceeds --mem-per-rank.\n\n"
      "With --gemm-gflops, --bandwidth-gbs, --latency-us and --network-gbs (per rank; scripts/bench measures\n"
      "them here) it also predicts prefill, decode and job tokens/s and where one MoE layer's time goes\n"
      "(docs/cluster-model.md says how, and how well it matched measured runs).\n\n");
  if (!parsed) return 0;
  if (req.world_size < 1) fail("-n {} must be at least 1", req.world_size);
  req.coordinators = parse_coordinators(coordinators);
  if (wire != "f32" && wire != "bf16") fail("--wire-dtype '{}' is not one of f32, bf16", wire);
  speed.wire_bytes = wire == "f32" ? 4 : 2;
  speed.step_tokens = req.max_step_tokens;
  if (speed.ranks_per_node < 1 || speed.ranks_per_node > req.world_size)
    fail("--ranks-per-node {} must be between 1 and -n", speed.ranks_per_node);
  if (speed.threads_per_rank < 1 || speed.node_cores < 0)
    fail("--threads must be at least 1 and --node-cores not negative");
  if (!(speed.load_imbalance >= 1.0) || !std::isfinite(speed.load_imbalance))
    fail("--load-imbalance {} must be at least 1", speed.load_imbalance);
  const bool predict = parsed->values.count("gemm-gflops") + parsed->values.count("bandwidth-gbs") +
                           parsed->values.count("network-gbs") >
                       0;
  req.model_dir = model;
  if (!mem.empty()) {
    req.mem_per_rank = parse_byte_size(mem, "--mem-per-rank");
    req.mem_per_rank_text = mem;
  }
  const MemoryPlan plan = plan_memory(req);
  std::cout << (json ? format_plan_json(plan) : format_plan_text(plan));
  if (predict) {
    if (json) fail("the throughput model prints text only; drop --json");
    std::cout << format_throughput_text(plan, speed, predict_throughput(plan, speed));
  }
  return plan.over_limit.empty() ? 0 : 3;
}

}  // namespace mote
