#include "mote/runtime/throughput_model.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "mote/util/error.h"

namespace mote {
namespace {

// Multiply-adds of one token's attention in one layer at context `pos`, as
// mote computes it (MLA in its latent form: queries folded into the
// latent space, values projected up after the weighted sum).
double attention_macs(const ModelConfig& c, double pos) {
  const double h = c.hidden_size, heads = c.num_attention_heads;
  if (c.attention == AttentionKind::Mla) {
    const double qk = c.qk_head_dim(), latent = c.kv_lora_rank, rope = c.qk_rope_head_dim;
    const double q = c.q_lora_rank > 0 ? h * c.q_lora_rank + c.q_lora_rank * heads * qk : h * heads * qk;
    const double kv_a = h * (latent + rope);
    const double fold = heads * c.qk_nope_head_dim * latent, up = heads * latent * c.v_head_dim;
    const double o = heads * c.v_head_dim * h;
    return q + kv_a + fold + up + o + pos * heads * (2 * latent + rope);
  }
  const double hd = c.head_dim;
  return h * heads * hd + h * 2 * c.num_key_value_heads * hd + heads * hd * h + pos * heads * 2 * hd;
}

double seconds_for(double macs, double gflops) { return gflops > 0 ? 2 * macs / (gflops * 1e9) : 0; }
double seconds_for_bytes(double bytes, double gbs) { return gbs > 0 ? bytes / (gbs * 1e9) : 0; }

}  // namespace

ThroughputPrediction predict_throughput(const MemoryPlan& plan, const ThroughputRequest& req) {
  const ModelConfig& c = plan.config;
  const auto& job = plan.request;
  const NodeFigures& node = req.node;
  if (!(node.gemm_gflops > 0) || !(node.bandwidth_gbs > 0) || node.latency_us < 0 || !(node.network_gbs > 0)) {
    fail("the throughput model needs --gemm-gflops, --bandwidth-gbs, --network-gbs (positive) and --latency-us");
  }
  if (req.prompt_tokens < 1 || req.new_tokens < 1 || req.step_tokens < 1)
    fail("prompt, new and step tokens must be at least 1");
  const int n = job.world_size, k_coord = job.coordinators, batch = job.batch_size;
  const double h = c.hidden_size, experts = c.n_routed_experts, top_k = c.num_experts_per_tok;
  const int moe_layers = static_cast<int>(c.moe_layers().size()), dense_layers = c.num_hidden_layers - moe_layers;

  // Expert ranks: each one's share of the routed experts; tokens follow the
  // experts (uniform routing), times the measured imbalance.
  int holders = 0, total_experts = 0, most = 0;
  for (const auto& r : plan.ranks) {
    holders += r.routed_experts > 0;
    total_experts += r.routed_experts;
    most = std::max(most, r.routed_experts);
  }
  const double busiest_share = total_experts > 0 ? static_cast<double>(most) / total_experts * req.load_imbalance : 0;
  uint64_t routed_bytes = 0;
  for (const auto& r : plan.ranks) routed_bytes += r.routed;
  const double expert_bytes = total_experts > 0 ? static_cast<double>(routed_bytes) / total_experts : 0;
  const double expert_macs = 3 * h * c.moe_intermediate_size;  // one token through one expert
  const double shared_macs = 3 * h * c.moe_intermediate_size * c.n_shared_experts, router_macs = h * experts;
  const double dense_macs = 3 * h * c.intermediate_size, head_macs = h * c.vocab_size;
  const bool coordinators_hold = job.coordinator_experts || n == 1;

  // What crosses the network per token and MoE layer: the hidden state to
  // each expert rank holding one of its experts (the coordinator's own part
  // stays home), and one result per expert back.
  const double destinations = holders > 0 ? holders * (1 - std::pow(1 - 1.0 / holders, top_k)) : 0;
  const double home = coordinators_hold && holders > 0 ? destinations / holders : 0;
  const double record = h * req.wire_bytes + 4.0 * (4 + 2 * top_k);
  const double remote = holders > 0 ? 1 - (coordinators_hold ? 1.0 / holders : 0) : 0;
  const auto exchange_seconds = [&](double tokens_per_coordinator) {
    // Three collectives, each a message to every other rank; the busiest
    // rank's bytes (a coordinator's out and back, or an expert rank's in
    // and out) over the network.
    const double coordinator_bytes =
        tokens_per_coordinator * ((destinations - home) * record + top_k * remote * h * req.wire_bytes);
    // An expert rank that is also a coordinator receives its own tokens without the network.
    const double from_others = coordinators_hold && n == k_coord ? static_cast<double>(k_coord - 1) / k_coord : 1.0;
    const double expert_rank_bytes =
        from_others * k_coord * tokens_per_coordinator * top_k * busiest_share * (h * req.wire_bytes + record);
    const double latency = n > 1 ? 3 * (n - 1) * node.latency_us * 1e-6 : 0;
    return latency + seconds_for_bytes(std::max(coordinator_bytes, expert_rank_bytes), node.network_gbs);
  };

  // The share of its cores a rank gets while `busy` ranks of the job compute at once.
  const int cores = req.node_cores > 0 ? req.node_cores : req.ranks_per_node * req.threads_per_rank;
  const auto share = [&](int busy) {
    const double on_node = std::max(1.0, static_cast<double>(busy) * req.ranks_per_node / n);
    return std::min(1.0, cores / (on_node * req.threads_per_rank));
  };
  const double coordinator_share = share(k_coord), expert_share = share(holders);

  ThroughputPrediction p;
  // Prefill: a coordinator's step feeds up to step_tokens of its requests' prompts.
  {
    const double t = std::min<double>(req.step_tokens, static_cast<double>(batch) * req.prompt_tokens);
    const double rows_with_logits = std::max(1.0, t / req.prompt_tokens);  // the last token of each prompt
    const double pos = req.prompt_tokens / 2.0;
    LayerTime& l = p.prefill_layer;
    l.attention =
        seconds_for(t * (attention_macs(c, pos) + router_macs + shared_macs), node.gemm_gflops * coordinator_share);
    l.experts = seconds_for(k_coord * t * top_k * expert_macs * busiest_share, node.gemm_gflops * expert_share);
    l.exchange = exchange_seconds(t);
    // Ranks idle while others work: a coordinator without experts during
    // the experts, an expert rank during attention.
    const double coordinator_busy = l.attention + (coordinators_hold ? l.experts : 0);
    const double shard_busy = l.experts;
    l.idle = ((l.total() - coordinator_busy) * k_coord + (l.total() - shard_busy) * (n - k_coord)) / n;
    const double dense = seconds_for(t * (attention_macs(c, pos) + dense_macs), node.gemm_gflops * coordinator_share);
    p.prefill_step_seconds = dense_layers * dense + moe_layers * l.total() +
                             seconds_for(rows_with_logits * head_macs, node.gemm_gflops * coordinator_share);
    p.prefill_tokens_per_s = k_coord * t / p.prefill_step_seconds;
  }
  // Decode: one token per request of the batch; weights are read once per
  // step whatever the batch, experts only where some token of the step goes.
  {
    const double b = batch, pos = req.prompt_tokens + req.new_tokens / 2.0;
    const RankPlan& coordinator = plan.ranks[0];
    const double per_layer_bytes =
        static_cast<double>(coordinator.attention + coordinator.router_and_norms + coordinator.shared) /
        std::max(c.num_hidden_layers, 1);
    const double kv_bytes = b * pos * c.kv_entry_size() * 4.0;
    LayerTime& l = p.decode_layer;
    l.attention = std::max(
        seconds_for_bytes(per_layer_bytes + kv_bytes, node.bandwidth_gbs),
        seconds_for(b * (attention_macs(c, pos) + router_macs + shared_macs), node.gemm_gflops * coordinator_share));
    const double tokens = k_coord * b;
    const double hit = experts > 0 ? 1 - std::pow(1 - top_k / experts, tokens) : 0;  // chance an expert gets some token
    const double busiest_experts = experts * busiest_share;
    l.experts = std::max(seconds_for_bytes(busiest_experts * hit * expert_bytes, node.bandwidth_gbs),
                         seconds_for(tokens * top_k * expert_macs * busiest_share, node.gemm_gflops * expert_share));
    l.exchange = exchange_seconds(b);
    const double coordinator_busy = l.attention + (coordinators_hold ? l.experts : 0);
    l.idle = ((l.total() - coordinator_busy) * k_coord + (l.total() - l.experts) * (n - k_coord)) / n;
    const double dense = std::max(seconds_for_bytes(static_cast<double>(coordinator.dense) / std::max(dense_layers, 1) +
                                                        per_layer_bytes + kv_bytes,
                                                    node.bandwidth_gbs),
                                  seconds_for(b * (attention_macs(c, pos) + dense_macs), node.gemm_gflops));
    const double head =
        std::max(seconds_for_bytes(head_macs * 2, node.bandwidth_gbs), seconds_for(b * head_macs, node.gemm_gflops));
    p.decode_step_seconds = dense_layers * dense + moe_layers * l.total() + head;
    p.decode_tokens_per_s = k_coord * b / p.decode_step_seconds;
  }
  // A job: every prompt once, then new_tokens - 1 decode steps (the first
  // new token comes from the prompt's own step).
  const double seconds_per_prompt_token =
      1 / p.prefill_tokens_per_s + (req.new_tokens - 1) / (req.prompt_tokens * p.decode_tokens_per_s);
  p.job_prompt_tokens_per_s = 1 / seconds_per_prompt_token;
  return p;
}

std::string format_throughput_text(const MemoryPlan& plan, const ThroughputRequest& req,
                                   const ThroughputPrediction& p) {
  const auto& job = plan.request;
  std::string out = fmt::format(
      "\nThroughput ({} ranks, {} coordinator{}, batch {} per coordinator, prompts of {} tokens, {} new tokens; per "
      "rank {:.1f} "
      "GFLOP/s, {:.1f} GB/s memory, {:.1f} us and {:.2f} GB/s network; expert load imbalance {:.2f})\n",
      job.world_size, job.coordinators, job.coordinators == 1 ? "" : "s", job.batch_size, req.prompt_tokens,
      req.new_tokens, req.node.gemm_gflops, req.node.bandwidth_gbs, req.node.latency_us, req.node.network_gbs,
      req.load_imbalance);
  out += fmt::format("  prefill: {:.1f} prompt tokens/s ({:.3f} s per step)\n", p.prefill_tokens_per_s,
                     p.prefill_step_seconds);
  out += fmt::format("  decode:  {:.1f} tokens/s ({:.4f} s per step)\n", p.decode_tokens_per_s, p.decode_step_seconds);
  out += fmt::format("  job:     {:.1f} prompt tokens/s\n", p.job_prompt_tokens_per_s);
  out += "  one MoE layer, ms     attention+shared   experts  exchange      idle (mean over ranks)\n";
  for (const auto& [name, l] : {std::pair{"prefill", p.prefill_layer}, std::pair{"decode", p.decode_layer}}) {
    out += fmt::format("  {:<20} {:>16.3f} {:>9.3f} {:>9.3f} {:>9.3f}\n", name, l.attention * 1e3, l.experts * 1e3,
                       l.exchange * 1e3, l.idle * 1e3);
  }
  return out;
}

}  // namespace mote
