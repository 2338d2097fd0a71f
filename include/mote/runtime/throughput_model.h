// A model of a job's speed on a cluster, from the model's shapes, the job's
// layout (ranks, coordinators, placement) and per-rank figures (product
// GFLOP/s, memory bandwidth, network latency and bandwidth). It follows
// mote's data flow: in each MoE layer every coordinator computes attention,
// router and shared expert for its own tokens, then every rank computes its
// routed experts for everyone's tokens, then the results come back; the
// layer lasts as long as the slowest coordinator plus the slowest expert
// rank plus the exchange. Prefill is compute-bound (multiply-adds over the
// product rate); decode is bandwidth-bound (weights and KV cache read per
// step over the bandwidth), each part taking the larger of the two.
#pragma once

#include <string>
#include <vector>

#include "mote/runtime/memory_plan.h"

namespace mote {

struct NodeFigures {
  double gemm_gflops = 0;    // per rank: sustained product rate on batched rows
  double bandwidth_gbs = 0;  // per rank: read bandwidth while streaming weights
  double latency_us = 0;     // one message between ranks
  double network_gbs = 0;    // per rank, each direction
};

struct ThroughputRequest {
  NodeFigures node;
  int prompt_tokens = 512;      // mean prompt length
  int new_tokens = 1;           // generated tokens per request
  int step_tokens = 2048;       // prompt tokens per coordinator per step (--max-step-tokens)
  double load_imbalance = 1.0;  // busiest expert rank's tokens over the mean (mote place prints it)
  int wire_bytes = 4;           // f32 (4) or bf16 (2) hidden states on the wire
  // Ranks sharing a node's cores: the figures above are a rank's when it
  // has its threads' cores to itself; when more ranks compute at once than
  // the node has cores for, each phase runs at the share it gets (ranks
  // that wait yield their cores).
  int ranks_per_node = 1;
  int threads_per_rank = 1;
  int node_cores = 0;  // 0: ranks_per_node x threads_per_rank (never oversubscribed)
};

// Seconds of one MoE layer in one step, where time goes.
struct LayerTime {
  double attention = 0;  // attention, router, norms and shared expert (slowest coordinator)
  double experts = 0;    // routed experts (slowest expert rank)
  double exchange = 0;   // the three collectives
  double idle = 0;       // the busiest rank's time in the layer spent waiting, summed over ranks / ranks
  double total() const { return attention + experts + exchange; }
};

struct ThroughputPrediction {
  LayerTime prefill_layer, decode_layer;
  double prefill_step_seconds = 0, decode_step_seconds = 0;
  double prefill_tokens_per_s = 0;     // prompt tokens, all coordinators
  double decode_tokens_per_s = 0;      // generated tokens at batch size per coordinator
  double job_prompt_tokens_per_s = 0;  // a job of prompts of prompt_tokens with new_tokens each
};

ThroughputPrediction predict_throughput(const MemoryPlan& plan, const ThroughputRequest& request);
std::string format_throughput_text(const MemoryPlan& plan, const ThroughputRequest& request,
                                   const ThroughputPrediction& p);

}  // namespace mote
