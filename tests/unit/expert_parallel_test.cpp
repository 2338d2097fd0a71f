// Placement rules and files, and the expert worker's protocol checks
// (no MPI needed: the worker only sees bytes).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "model_files.h"
#include "mote/expert_parallel/expert_exchange.h"
#include "mote/expert_parallel/placement.h"
#include "mote/io/safetensors_writer.h"
#include "mote/model/loaded_model.h"
#include "mote/runtime/job.h"
#include "mote/runtime/load_placement.h"
#include "mote/runtime/memory_plan.h"

namespace mote {
namespace {

TEST(Placement, ContiguousAndRoundRobin) {
  const Placement c = Placement::by_rule("contiguous", 2, 8, 3, true);
  EXPECT_EQ(c.owner(0, 0), 0);
  EXPECT_EQ(c.owner(0, 2), 0);
  EXPECT_EQ(c.owner(0, 3), 1);
  EXPECT_EQ(c.owner(1, 7), 2);
  EXPECT_EQ(c.count_on(0) + c.count_on(1) + c.count_on(2), 16);
  const Placement r = Placement::by_rule("round-robin", 1, 8, 3, false);
  for (int e = 0; e < 8; ++e) EXPECT_EQ(r.owner(0, e), 1 + e % 2);
  EXPECT_EQ(r.count_on(0), 0);
  // One rank is its own coordinator: coordinators without experts leave none to hold them.
  EXPECT_ERROR_CONTAINS(Placement::by_rule("contiguous", 1, 8, 1, false),
                        "a job of one rank has no rank but its coordinator");
  EXPECT_ERROR_CONTAINS(Placement::by_rule("random", 1, 8, 2, true), "--placement 'random'");
}

TEST(Placement, FileIsValidated) {
  test::ScratchDir dir;
  const auto path = dir / "p.json";
  test::write_file(path, R"({"owner": [[0, 1, 1, 0]]})");
  EXPECT_EQ(Placement::from_file(path, 1, 4, 2, true).owner(0, 1), 1);
  EXPECT_ERROR_CONTAINS(Placement::from_file(path, 2, 4, 2, true), "has 1 rows but the model has 2 MoE layers");
  EXPECT_ERROR_CONTAINS(Placement::from_file(path, 1, 5, 2, true), "owner[0] must list 5 ranks");
  EXPECT_ERROR_CONTAINS(Placement::from_file(path, 1, 4, 2, false),
                        "owner[0][0] = 0 is a coordinator, but coordinators hold no experts");
  test::write_file(path, R"({"owner": [[0, 1, 7, 0]]})");
  EXPECT_ERROR_CONTAINS(
      Placement::from_file(path, 1, 4, 2, true),
      "a placement for 8 ranks or more (owner[0][2] = 7), but this job has 2; run it with as many ranks, or make a "
      "placement for 2 with 'mote place -n 2'");
  test::write_file(path, R"({"owner": [[0, -1, 1, 0]]})");
  EXPECT_ERROR_CONTAINS(Placement::from_file(path, 1, 4, 2, true), "owner[0][1] = -1 is not a rank");
  test::write_file(path, R"({"placement": 1})");
  EXPECT_ERROR_CONTAINS(Placement::from_file(path, 1, 4, 2, true), "expected {\"owner\"");
}

TEST(ExpertWorker, RefusesTokensForExpertsItDoesNotOwn) {
  const auto m = load_model(test::bundled_model());
  const ModelConfig& c = m->config;
  const Placement placement =
      Placement::by_rule("round-robin", 5, c.n_routed_experts, 2, true);  // rank 0: even experts
  const WireFormat wire{c.hidden_size, c.num_experts_per_tok, WireDType::F32};
  std::vector<ExpertCounters> per_source(1, ExpertCounters(1, 5, c.n_routed_experts));
  const ExpertCounters& counters = per_source[0];
  ExpertWorker worker(m->weights, c, placement, 0, wire, &per_source);

  const auto record = [&](std::vector<int32_t> experts) {
    std::vector<char> r(wire.record_bytes(), 0);
    const auto n = static_cast<int32_t>(experts.size());
    std::memcpy(r.data(), &n, 4);
    for (size_t j = 0; j < experts.size(); ++j) std::memcpy(r.data() + 4 * (WireFormat::kMeta + j), &experts[j], 4);
    return r;
  };
  std::vector<char> results;
  std::vector<int> result_counts;
  // Experts 2 and 4 are rank 0's: processed and counted.
  worker.process(record({2, 4}), {1}, {0}, results, result_counts);
  EXPECT_EQ(result_counts[0], static_cast<int>(2 * wire.result_bytes()));
  EXPECT_EQ(counters.tokens[counters.index(0, 0, 0, 2)], 1u);
  // Expert 3 belongs to rank 1.
  EXPECT_ERROR_CONTAINS(worker.process(record({3}), {1}, {0}, results, result_counts),
                        "protocol error: rank 0 received a token for expert 3 of MoE layer 0");
  EXPECT_ERROR_CONTAINS(worker.process(record({}), {1}, {0}, results, result_counts), "record with 0 experts");
  EXPECT_ERROR_CONTAINS(worker.process(record({40}), {1}, {0}, results, result_counts), "expert 40");
}

// A coordinator's tokens for its own experts are read in place instead of
// sent to itself: the same results to the last bit, rounded as the wire
// rounds, and the same counts, as when they arrive as records.
TEST(ExpertWorker, OwnTokensInPlaceMatchRecordsBitForBit) {
  const auto m = load_model(test::bundled_model());
  const ModelConfig& c = m->config;
  const int k = c.num_experts_per_tok, moe_layers = static_cast<int>(c.moe_layers().size()), n = 5;
  const Placement placement = Placement::by_rule("contiguous", moe_layers, c.n_routed_experts, 1, true);
  std::vector<float> x(static_cast<size_t>(n) * c.hidden_size);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * 1.7f + 1e-3f;
  std::vector<int32_t> experts(static_cast<size_t>(n) * k);
  std::vector<float> weights(experts.size());
  std::vector<StepRow> rows(static_cast<size_t>(n));
  std::vector<int32_t> slots;
  for (int r = 0; r < n; ++r) {
    rows[r].cls = static_cast<int16_t>(r % 2);
    rows[r].phase = static_cast<uint8_t>(r == n - 1);
    for (int s = 0; s < k; ++s) {
      experts[r * k + s] = (r * 3 + s * 5) % c.n_routed_experts;
      weights[r * k + s] = 0.1f + 0.013f * static_cast<float>(r * k + s);
      slots.push_back(r * k + s);
    }
  }
  experts[k] = -1;  // an empty slot: no entry
  slots.erase(slots.begin() + k);
  const ExpertBatch batch{c.moe_layers()[1], 1, x.data(), n, experts.data(), weights.data(), k, rows};

  for (const WireDType dtype : {WireDType::F32, WireDType::BF16}) {
    const WireFormat wire{c.hidden_size, k, dtype};
    // The same tokens as one record each, as another rank would send them.
    std::vector<char> recv;
    for (int r = 0; r < n; ++r) {
      std::vector<char> rec(wire.record_bytes(), 0);
      int32_t entries = 0;
      for (int s = 0; s < k; ++s) {
        if (experts[r * k + s] < 0) continue;
        std::memcpy(rec.data() + 4 * (WireFormat::kMeta + entries), &experts[r * k + s], 4);
        std::memcpy(rec.data() + 4 * (WireFormat::kMeta + k + entries), &weights[r * k + s], 4);
        ++entries;
      }
      const int32_t meta[4] = {entries, rows[r].cls, rows[r].phase, 0};
      std::memcpy(rec.data(), meta, sizeof meta);
      for (int i = 0; i < c.hidden_size; ++i) {
        const float v = x[static_cast<size_t>(r) * c.hidden_size + i];
        if (dtype == WireDType::F32) {
          std::memcpy(rec.data() + wire.header_bytes() + 4 * i, &v, 4);
        } else {
          const uint16_t b = float_to_bf16(v);
          std::memcpy(rec.data() + wire.header_bytes() + 2 * i, &b, 2);
        }
      }
      recv.insert(recv.end(), rec.begin(), rec.end());
    }
    std::vector<ExpertCounters> sent(1, ExpertCounters(2, moe_layers, c.n_routed_experts)), local(sent);
    ExpertWorker by_record(m->weights, c, placement, 0, wire, &sent),
        in_place(m->weights, c, placement, 0, wire, &local);
    std::vector<char> results, none;
    std::vector<int> counts, no_counts;
    by_record.process(recv, {n}, {1}, results, counts);
    in_place.process({}, {0}, {-1}, none, no_counts, {&batch, slots});
    EXPECT_EQ(no_counts, std::vector<int>{0});
    EXPECT_TRUE(none.empty());
    EXPECT_EQ(local[0].first_difference(sent[0]), std::nullopt);
    ASSERT_EQ(results.size(), slots.size() * wire.result_bytes());
    for (size_t i = 0; i < slots.size(); ++i) {
      const float* got = in_place.local_result(i);
      for (int j = 0; j < c.hidden_size; ++j) {
        float want;
        if (dtype == WireDType::F32) {
          std::memcpy(&want, results.data() + i * wire.result_bytes() + 4 * j, 4);
        } else {
          uint16_t b;
          std::memcpy(&b, results.data() + i * wire.result_bytes() + 2 * j, 2);
          const uint32_t wide = static_cast<uint32_t>(b) << 16;
          std::memcpy(&want, &wide, 4);
        }
        ASSERT_EQ(std::bit_cast<uint32_t>(got[j]), std::bit_cast<uint32_t>(want)) << "entry " << i << " value " << j;
      }
    }
    // Its own tokens are checked like anyone's: an expert a mask switches off is refused.
    ExpertMask off(moe_layers, c.n_routed_experts);
    off.name = "off";
    off.set_off(1, experts[0]);
    rows[0].mask = &off;
    EXPECT_ERROR_CONTAINS(in_place.process({}, {0}, {-1}, none, no_counts, {&batch, slots}),
                          "which mask set 'off' switches off");
    rows[0].mask = nullptr;
  }
}

}  // namespace
}  // namespace mote

namespace mote {
namespace {

// A profile of one class, prompt phase only, with the given tokens per (layer, expert).
ProfileData profile_with(int layers, int experts, const std::vector<uint64_t>& load) {
  ProfileData p;
  p.classes = {"all"};
  p.moe_layers = layers;
  p.experts = experts;
  p.counts.assign(static_cast<size_t>(kPhaseCount) * layers * experts, 0);
  std::copy(load.begin(), load.end(), p.counts.begin());  // phase 0 = prompt
  return p;
}

TEST(LoadPlacement, BalancesExpectedTokensDeterministically) {
  // Experts 0-3 are hot: the contiguous rule puts all of them on rank 0.
  const ProfileData p = profile_with(1, 8, {100, 90, 80, 70, 10, 10, 10, 10});
  LoadPlacementSpec spec;
  spec.world_size = 2;
  const LoadPlacement placed = place_by_load(p, spec);
  std::vector<double> load(2, 0.0);
  std::vector<int> held(2, 0);
  for (int e = 0; e < 8; ++e) {
    load[placed.owner[e]] += static_cast<double>(p.counts[e]);
    ++held[placed.owner[e]];
  }
  EXPECT_EQ(held, (std::vector<int>{4, 4}));  // memory stays even by default
  EXPECT_EQ(load[0], load[1]);                // 190 each
  EXPECT_NEAR(placed.before[0], 340.0 / 190.0, 1e-12);
  EXPECT_NEAR(placed.after[0], 1.0, 1e-12);
  const LoadPlacement again = place_by_load(p, spec);
  EXPECT_EQ(again.owner, placed.owner);
  // The generated phase alone has no tokens: any balanced split will do, and it is still even in memory.
  spec.phase = "generated";
  EXPECT_EQ(place_by_load(p, spec).after[0], 1.0);
  spec.phase = "first";
  EXPECT_ERROR_CONTAINS(place_by_load(p, spec), "--phase 'first'");
}

TEST(LoadPlacement, RespectsCoordinatorsAndCapacity) {
  const ProfileData p = profile_with(2, 6, {5, 4, 3, 2, 1, 1, 6, 5, 4, 3, 2, 1});
  LoadPlacementSpec spec;
  spec.world_size = 4;
  spec.coordinators = 2;
  spec.coordinator_experts = false;
  const LoadPlacement placed = place_by_load(p, spec);
  for (int o : placed.owner) EXPECT_GE(o, 2);  // only ranks 2 and 3 hold experts
  // Room for 8 experts over 2 layers on rank 2, 4 on rank 3: 4 and 2 per layer.
  spec.capacity = {0, 0, 8, 4};
  const LoadPlacement tight = place_by_load(p, spec);
  for (int l = 0; l < 2; ++l) {
    EXPECT_EQ(std::count(tight.owner.begin() + l * 6, tight.owner.begin() + (l + 1) * 6, 3), 2);
  }
  spec.capacity = {0, 0, 4, 2};
  EXPECT_ERROR_CONTAINS(place_by_load(p, spec), "do not fit");
  spec.classes = {"nope"};
  spec.capacity.clear();
  EXPECT_ERROR_CONTAINS(place_by_load(p, spec), "no class 'nope'");
}

}  // namespace
}  // namespace mote

namespace mote {
namespace {

// One meaning of --coordinators for jobs, scans, plans and placements.
TEST(Coordinators, ZeroIsEveryRankAndMoreThanTheWorldIsNamed) {
  EXPECT_EQ(coordinator_count(0, 4), 4);
  EXPECT_EQ(coordinator_count(2, 4), 2);
  EXPECT_ERROR_CONTAINS(coordinator_count(5, 4), "--coordinators 5 is more than the job's 4 ranks");
  const PlanRequest plan;
  const LoadPlacementSpec place;
  const JobOptions job;
  EXPECT_EQ(plan.coordinators, 0);
  EXPECT_EQ(place.coordinators, 0);
  EXPECT_EQ(job.coordinators, 0);
}

}  // namespace
}  // namespace mote
