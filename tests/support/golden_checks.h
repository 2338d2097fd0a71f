// Checks shared by the golden tests that read reference outputs from .npz
// files: routing per token and MoE layer, and the greedy continuation fed
// back through the KV cache.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "mote/model/kv_cache.h"
#include "mote/model/moe_transformer.h"

namespace mote::test {

// One prefill of a whole prompt (slot 0 of `cache`), with the logits of every
// position and the routing of every token and MoE layer.
struct Prefill {
  std::vector<float> logits;     // [position][vocab]
  std::vector<int32_t> experts;  // [position][moe layer][slot]
  std::vector<float> weights;
  int layers = 0, k = 0;
};

inline Prefill prefill(MoeTransformer& model, KvCache& cache, const std::vector<int32_t>& ids, int vocab,
                       const ExpertMask* mask = nullptr) {
  const int n = static_cast<int>(ids.size());
  Prefill out;
  out.layers = model.moe_layer_count();
  out.k = model.top_k();
  std::vector<StepRow> rows;
  for (int p = 0; p < n; ++p) rows.push_back({0, p, ids[p], mask});
  std::vector<int32_t> all_rows(n);
  for (int p = 0; p < n; ++p) all_rows[p] = p;
  out.logits.resize(static_cast<size_t>(n) * vocab);
  out.experts.resize(static_cast<size_t>(n) * out.layers * out.k);
  out.weights.resize(out.experts.size());
  model.forward(rows, cache, all_rows, out.logits.data(), {out.experts.data(), out.weights.data()});
  return out;
}

struct RoutingCheck {
  float max_weight_diff = 0.0f;
  int compared = 0;  // (position, MoE layer) pairs compared
  int skipped = 0;   // left out by `compare`
};

// mote's routing ([position][moe layer][slot], selection order) against a
// reference's ([moe layer][position][slot], any order): the same expert set
// wherever compare(moe_layer, position) is true.
inline RoutingCheck compare_routing(const std::vector<int32_t>& experts, const std::vector<float>& weights,
                                    const std::vector<int32_t>& ref_experts, const std::vector<float>& ref_weights,
                                    int n, int layers, int k, const std::function<bool(int, int)>& compare = {}) {
  RoutingCheck check;
  for (int m = 0; m < layers; ++m) {
    for (int p = 0; p < n; ++p) {
      if (compare && !compare(m, p)) {
        ++check.skipped;
        continue;
      }
      std::vector<std::pair<int32_t, float>> ours, ref;
      for (int s = 0; s < k; ++s) {
        const size_t at = (static_cast<size_t>(p) * layers + m) * k + s;
        const size_t ref_at = (static_cast<size_t>(m) * n + p) * k + s;
        ours.emplace_back(experts[at], weights[at]);
        ref.emplace_back(ref_experts[ref_at], ref_weights[ref_at]);
      }
      std::sort(ours.begin(), ours.end());
      std::sort(ref.begin(), ref.end());
      for (int s = 0; s < k; ++s) {
        EXPECT_EQ(ours[s].first, ref[s].first) << "MoE layer " << m << " position " << p;
        check.max_weight_diff = std::max(check.max_weight_diff, std::abs(ours[s].second - ref[s].second));
      }
      ++check.compared;
    }
  }
  return check;
}

// From the last prompt position's logits, feeds the reference's greedy
// tokens back through the cache (teacher forcing, so one near-tie cannot
// hide the rest), checking each step's argmax; returns the largest
// difference from the reference's logit rows.
inline float follow_greedy(MoeTransformer& model, KvCache& cache, const float* last_logits, int n,
                           const std::vector<int32_t>& gen_ids, const std::vector<float>& gen_logits, int vocab) {
  std::vector<float> step_logits(vocab);
  const std::vector<int32_t> first_row{0};
  float max_diff = 0.0f;
  const float* current = last_logits;
  const int steps = static_cast<int>(gen_ids.size());
  for (int i = 0; i < steps; ++i) {
    const float* ref = &gen_logits[static_cast<size_t>(i) * vocab];
    for (int v = 0; v < vocab; ++v) max_diff = std::max(max_diff, std::abs(current[v] - ref[v]));
    EXPECT_EQ(std::max_element(current, current + vocab) - current, gen_ids[i]) << "greedy step " << i;
    if (i + 1 == steps) break;
    const StepRow step{0, n + i, gen_ids[i]};
    model.forward({&step, 1}, cache, first_row, step_logits.data());
    current = step_logits.data();
  }
  return max_diff;
}

}  // namespace mote::test
