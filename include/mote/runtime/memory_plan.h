// What a job will need per rank, computed from config.json and the
// safetensors headers (or, for a model not downloaded yet, config.json and
// model.safetensors.index.json alone) without mapping any weights: weight
// bytes by kind, the KV cache, working buffers, and the total.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "mote/expert_parallel/placement.h"
#include "mote/model/config.h"

namespace mote {

struct PlanRequest {
  std::filesystem::path model_dir;
  int world_size = 1;
  int coordinators = 0;  // ranks 0..K-1 hold the non-expert weights and KV caches; 0: every rank
  std::string placement = "contiguous";
  std::string placement_file;
  bool coordinator_experts = true;
  int batch_size = 8;             // requests decoded together
  int context_tokens = 2048;      // prompt + generated tokens per request
  int max_step_tokens = 2048;     // prompt tokens fed per step at most
  uint64_t mem_per_rank = 0;      // bytes; 0 = no limit to check
  std::string mem_per_rank_text;  // as the user wrote it, for messages
};

// Bytes one rank holds. Weights are split as mote loads them: a
// coordinator holds everything but other ranks' routed experts; an expert
// shard holds only its own.
struct RankPlan {
  int routed_experts = 0;  // (layer, expert) pairs held
  uint64_t embeddings = 0, attention = 0, dense = 0, router_and_norms = 0, shared = 0, routed = 0;
  uint64_t kv_cache = 0, buffers = 0;
  // The process itself: code, libraries, MPI's buffers and the tokenizer
  // every rank loads (measured, not derived: bench/plan_accuracy.sh).
  uint64_t process = 0;
  uint64_t weights() const { return embeddings + attention + dense + router_and_norms + shared + routed; }
  uint64_t total() const { return weights() + kv_cache + buffers + process; }
};

struct MemoryPlan {
  ModelConfig config;
  PlanRequest request;
  std::string placement_name;
  std::string sizes_from;           // where tensor sizes came from
  uint64_t kv_bytes_per_token = 0;  // on the coordinator, all layers but sliding-window ones
  uint64_t kv_window_bytes = 0;     // per request: the sliding-window layers' windows
  // Parameters (MXFP4 values counted one each, their scales not at all),
  // and those of the routed experts.
  uint64_t parameters = 0, routed_parameters = 0;
  uint64_t model_bytes = 0;  // every tensor once
  std::vector<RankPlan> ranks;
  std::vector<int> over_limit;  // ranks whose total exceeds mem_per_rank
};

// Reads the model directory's config, index and headers (never the weights)
// and plans the job; a tensor the config implies but the files lack is an
// error naming it.
MemoryPlan plan_memory(const PlanRequest& request);

std::string format_plan_text(const MemoryPlan& plan);
std::string format_plan_json(const MemoryPlan& plan);

}  // namespace mote
