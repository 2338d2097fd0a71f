// mote plan: per-rank memory from config.json and the headers, or from
// config.json and the index alone (a model not downloaded yet).
#include "mote/runtime/memory_plan.h"
#include "mote/runtime/throughput_model.h"

#include <gtest/gtest.h>

#include "model_files.h"
#include "mote/io/json_file.h"
#include "mote/model/loaded_model.h"

namespace mote {
namespace {

TEST(Plan, DeepSeekR1ShapesFromTheIndexAlone) {
  test::ScratchDir dir;
  const auto config = read_json_file(std::filesystem::path(MOTE_SOURCE_DIR) / "bench/configs/deepseek-r1.json");
  write_synthetic_model(dir.path(), config, 1, test::bundled_model(), {.layers_per_shard = 4, .index_only = true});
  ASSERT_FALSE(std::filesystem::exists(dir / "model-00001-of-00017.safetensors"));
  PlanRequest req;
  req.model_dir = dir.path();
  req.world_size = 8;
  req.coordinators = 1;
  req.mem_per_rank = 120ull << 30;
  const MemoryPlan plan = plan_memory(req);
  EXPECT_EQ(plan.sizes_from, "config.json and the index (no weight files present)");
  ASSERT_EQ(plan.ranks.size(), 8u);
  // 58 MoE layers x 32 of the 256 experts per rank; an expert is three
  // 2048 x 7168 FP8 matrices, each with 16 x 56 float32 block scales.
  const uint64_t expert = 3 * (2048ull * 7168 + 16 * 56 * 4);
  for (const auto& r : plan.ranks) {
    EXPECT_EQ(r.routed_experts, 58 * 32);
    EXPECT_EQ(r.routed, 58 * 32 * expert);
  }
  // Embeddings and lm_head stay bf16: 2 x 129280 x 7168 x 2 bytes, on the coordinator only.
  EXPECT_EQ(plan.ranks[0].embeddings, 2ull * 129280 * 7168 * 2);
  EXPECT_EQ(plan.ranks[1].embeddings, 0u);
  EXPECT_EQ(plan.ranks[1].attention, 0u);
  // Three dense layers of 18432 and 58 shared experts of 2048, FP8 with scales.
  EXPECT_EQ(plan.ranks[0].dense, 3 * 3 * (18432ull * 7168 + 144 * 56 * 4));
  EXPECT_EQ(plan.ranks[0].shared, 58 * expert);
  // KV cache: 61 layers x (512 + 64) fp32 values per token.
  EXPECT_EQ(plan.kv_bytes_per_token, 61u * 576 * 4);
  // 81.8 GB of experts per rank, plus 19 GB more on the coordinator, fit in 120 GiB.
  EXPECT_TRUE(plan.over_limit.empty());
  const uint64_t all_weights = [&] {
    uint64_t t = 0;
    for (const auto& r : plan.ranks) t += r.weights();
    return t;
  }();
  // R1's 671 B parameters less its 14 B multi-token-prediction layer, mostly one byte each.
  EXPECT_GT(all_weights, 650e9);
  EXPECT_LT(all_weights, 690e9);
  EXPECT_NE(format_plan_text(plan).find("sizes from config.json and the index"), std::string::npos);
  req.mem_per_rank = 100ull << 30;
  EXPECT_EQ(plan_memory(req).over_limit, std::vector<int>{0});  // only the coordinator needs more than 100 GiB
}

// gpt-oss-20b and -120b as published: 20.91 B and 116.83 B parameters,
// checkpoints of 12.8 GiB and 60.8 GiB (OpenAI's model card), from the
// index alone; each rank holds its share of the stacked MXFP4 experts.
TEST(Plan, GptOssShapesMatchThePublishedCheckpoints) {
  for (const auto& [name, parameters, gib, experts] :
       {std::tuple{"gpt-oss-20b", 20.91e9, 12.8, 24 * 32}, std::tuple{"gpt-oss-120b", 116.83e9, 60.8, 36 * 128}}) {
    SCOPED_TRACE(name);
    test::ScratchDir dir;
    const auto config =
        read_json_file(std::filesystem::path(MOTE_SOURCE_DIR) / "bench/configs" / (std::string(name) + ".json"));
    write_synthetic_model(dir.path(), config, 1, test::bundled_model(), {.layers_per_shard = 4, .index_only = true});
    PlanRequest req;
    req.model_dir = dir.path();
    req.world_size = 4;
    req.coordinators = 1;
    const MemoryPlan plan = plan_memory(req);
    EXPECT_EQ(plan.sizes_from, "config.json and the index (no weight files present)");
    EXPECT_NEAR(static_cast<double>(plan.parameters) / parameters, 1.0, 0.01) << plan.parameters;
    EXPECT_NEAR(static_cast<double>(plan.model_bytes) / (gib * (1ull << 30)), 1.0, 0.01) << plan.model_bytes;
    uint64_t routed = 0;
    for (const auto& r : plan.ranks) {
      EXPECT_EQ(r.routed_experts, experts / 4);
      EXPECT_EQ(r.routed, plan.ranks[0].routed);  // 1/N of the experts' bytes each
      routed += r.routed;
    }
    // MXFP4: half a byte and 1/32 of a scale byte per value, and bf16 biases.
    const uint64_t width = 2880, per_expert = 3 * width * width;
    EXPECT_EQ(routed, experts * (per_expert / 2 + per_expert / 32 + 3 * width * 2));
  }
}

TEST(Plan, HeadersOfTheBundledModelAddUpToItsTensors) {
  PlanRequest req;
  req.model_dir = test::bundled_model();
  req.world_size = 3;
  req.coordinators = 1;  // the non-expert weights once
  const MemoryPlan plan = plan_memory(req);
  EXPECT_NE(plan.sizes_from.find("safetensors headers"), std::string::npos);
  const SafetensorsFile file(req.model_dir / "model.safetensors", false);
  uint64_t tensors = 0;
  for (const auto& [name, view] : file.tensors()) tensors += view.nbytes;
  uint64_t planned = 0;
  for (const auto& r : plan.ranks) planned += r.weights();
  EXPECT_EQ(planned, tensors);
  EXPECT_EQ(plan.ranks[0].routed_experts + plan.ranks[1].routed_experts + plan.ranks[2].routed_experts, 5 * 32);
}

TEST(Plan, AnIndexThatLacksATensorIsNamed) {
  test::ScratchDir dir;
  auto config = test::small_config();
  write_synthetic_model(dir.path(), config, 1, test::bundled_model(), {.layers_per_shard = 1, .index_only = true});
  auto index = read_json_file(dir / "model.safetensors.index.json");
  index["weight_map"].erase("model.layers.2.mlp.experts.5.down_proj.weight");
  test::write_file(dir / "model.safetensors.index.json", index.dump());
  PlanRequest req;
  req.model_dir = dir.path();
  EXPECT_ERROR_CONTAINS(plan_memory(req),
                        "the index does not map tensor 'model.layers.2.mlp.experts.5.down_proj.weight'");
}

}  // namespace
}  // namespace mote

namespace mote {
namespace {

// R1 as an index-only directory, planned for `n` ranks and `k` coordinators.
MemoryPlan r1_plan(const test::ScratchDir& dir, int n, int k) {
  if (!std::filesystem::exists(dir / "config.json")) {
    const auto config = read_json_file(std::filesystem::path(MOTE_SOURCE_DIR) / "bench/configs/deepseek-r1.json");
    write_synthetic_model(dir.path(), config, 1, test::bundled_model(), {.layers_per_shard = 4, .index_only = true});
  }
  PlanRequest req;
  req.model_dir = dir.path();
  req.world_size = n;
  req.coordinators = k;
  return plan_memory(req);
}

TEST(Plan, EveryCoordinatorHoldsTheNonExpertWeightsAndAKvCache) {
  test::ScratchDir dir;
  const MemoryPlan one = r1_plan(dir, 4, 1), two = r1_plan(dir, 4, 2);
  EXPECT_EQ(two.ranks[1].attention, one.ranks[0].attention);
  EXPECT_EQ(two.ranks[1].kv_cache, one.ranks[0].kv_cache);
  EXPECT_EQ(two.ranks[2].attention, 0u);
  EXPECT_EQ(two.ranks[1].routed, one.ranks[1].routed);  // experts stay where the placement puts them
}

NodeFigures node() { return {.gemm_gflops = 3500, .bandwidth_gbs = 400, .latency_us = 10, .network_gbs = 12.5}; }

TEST(ThroughputModel, CoordinatorsScaleWhatOneRankWouldDoAlone) {
  test::ScratchDir dir;
  ThroughputRequest req;
  req.node = node();
  const auto k1 = predict_throughput(r1_plan(dir, 8, 1), req), k8 = predict_throughput(r1_plan(dir, 8, 8), req);
  // One coordinator: attention stays on rank 0 whatever the world size, so
  // prefill is bounded by it; eight share it.
  EXPECT_GT(k8.prefill_tokens_per_s, 3.5 * k1.prefill_tokens_per_s);
  EXPECT_GT(k8.decode_tokens_per_s, 2 * k1.decode_tokens_per_s);
  // With one coordinator the expert ranks wait during attention; with
  // eight every rank works but during the exchange.
  EXPECT_GT(k1.prefill_layer.idle, 0.5 * k1.prefill_layer.attention);
  EXPECT_NEAR(k8.prefill_layer.idle, k8.prefill_layer.exchange, 1e-12);
  // Attention per coordinator is the same; experts per rank grow with the tokens sent to them.
  EXPECT_DOUBLE_EQ(k1.prefill_layer.attention, k8.prefill_layer.attention);
  EXPECT_NEAR(k8.prefill_layer.experts, 8 * k1.prefill_layer.experts, 1e-9 * k8.prefill_layer.experts);
  // One rank alone: no exchange, no idle time.
  const auto alone = predict_throughput(r1_plan(dir, 1, 1), req);
  EXPECT_EQ(alone.prefill_layer.exchange, 0.0);
  EXPECT_NEAR(alone.prefill_layer.idle, 0.0, 1e-12);
  // Twice the product rate halves a compute-bound prefill step.
  ThroughputRequest faster = req;
  faster.node.gemm_gflops *= 2;
  EXPECT_NEAR(predict_throughput(r1_plan(dir, 1, 1), faster).prefill_step_seconds, alone.prefill_step_seconds / 2,
              1e-9);
  // Load imbalance slows only the experts.
  ThroughputRequest skewed = req;
  skewed.load_imbalance = 1.5;
  const auto s = predict_throughput(r1_plan(dir, 8, 8), skewed);
  EXPECT_NEAR(s.prefill_layer.experts, 1.5 * k8.prefill_layer.experts, 1e-9);
  EXPECT_DOUBLE_EQ(s.prefill_layer.attention, k8.prefill_layer.attention);
  // Oversubscribed: 4 ranks of 1 thread on a 2-core node run experts at half speed.
  ThroughputRequest crowded = req;
  crowded.ranks_per_node = 4;
  crowded.node_cores = 2;
  const auto c = predict_throughput(r1_plan(dir, 4, 1), crowded), spread = predict_throughput(r1_plan(dir, 4, 1), req);
  EXPECT_NEAR(c.prefill_layer.experts, 2 * spread.prefill_layer.experts, 1e-9);
  EXPECT_DOUBLE_EQ(c.prefill_layer.attention, spread.prefill_layer.attention);  // one coordinator: a core of its own
  ThroughputRequest none = req;
  none.node.gemm_gflops = 0;
  EXPECT_ERROR_CONTAINS(predict_throughput(r1_plan(dir, 1, 1), none), "needs --gemm-gflops");
}

}  // namespace
}  // namespace mote

namespace mote {
namespace {

// What the plan says each rank holds is what the loader holds there, for
// every family's fixture, world size and number of coordinators.
TEST(Plan, EachRankHoldsWhatThePlanSaysInEveryFamily) {
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(MOTE_SOURCE_DIR) / "models")) {
    if (!std::filesystem::exists(entry.path() / "config.json")) continue;
    for (int world = 1; world <= 3; ++world) {
      for (const int coordinators : {1, world}) {
        PlanRequest req;
        req.model_dir = entry.path();
        req.world_size = world;
        req.coordinators = coordinators;
        const MemoryPlan plan = plan_memory(req);
        const int moe_layers = static_cast<int>(plan.config.moe_layers().size());
        const Placement placement =
            Placement::by_rule("contiguous", moe_layers, plan.config.n_routed_experts, world, true, coordinators);
        int experts = 0;
        for (int r = 0; r < world; ++r) {
          SCOPED_TRACE(entry.path().filename().string() + ", rank " + std::to_string(r) + " of " +
                       std::to_string(world) + ", " + std::to_string(coordinators) + " coordinators");
          const auto model = load_model(
              entry.path(), [&](int l, int e) { return placement.owner(l, e) == r; }, r < coordinators);
          EXPECT_EQ(plan.ranks[static_cast<size_t>(r)].weights(), model->weights.file_bytes);
          EXPECT_EQ(plan.ranks[static_cast<size_t>(r)].routed_experts, placement.count_on(r));
          experts += plan.ranks[static_cast<size_t>(r)].routed_experts;
        }
        EXPECT_EQ(experts, moe_layers * plan.config.n_routed_experts);
      }
    }
  }
}

}  // namespace
}  // namespace mote
