// Multi-head latent attention (MLA) over the compressed KV cache. The key
// up-projection is folded into the query and the value up-projection is
// applied after the weighted sum, so per-head keys and values are never
// materialised:
//   score(t, s) = (q_nope W_k) . latent_s + q_rope . k_rope_s
//   out(t)      = W_v (sum_s p(t, s) latent_s)
#pragma once

#include <span>
#include <vector>

#include "mote/model/config.h"
#include "mote/model/kv_cache.h"
#include "mote/model/step.h"
#include "mote/model/weights.h"
#include "mote/ops/matmul.h"
#include "mote/ops/rope.h"

namespace mote {

class MlaAttention {
 public:
  MlaAttention(const ModelConfig& config, const Rope& rope);

  // x: normalised hidden states [rows, hidden]; out: [rows, hidden].
  // rope_cos/rope_sin: per row, qk_rope_head_dim/2 values each.
  void forward(const AttentionWeights& w, int layer, const float* x, std::span<const StepRow> rows,
               const float* rope_cos, const float* rope_sin, KvCache& cache, float* out);

 private:
  const ModelConfig& c_;
  const Rope& rope_;
  float scale_;
  std::vector<float> q_a_, q_, kv_, q_latent_, out_latent_, attn_v_, scores_;

  // Rows [r0, r1) of one sequence, every head: queries that read the same
  // cache entries, positions [0, context).
  struct QueryTile {
    int r0, r1, context;
  };
  // What the score and sum loops of one forward call read.
  struct Span {
    int layer, heads, rank;
    float scale;
    std::span<const StepRow> rows;
    const KvCache& cache;
  };
  static constexpr int kTileRows = 4;
  static constexpr int kTilePositions = 8;  // cache entries read by every query of a tile while in L1
  static constexpr int kSumColumns = 64;    // latent columns of a weighted sum's pass over the cache
  std::vector<QueryTile> tiles_;

  void tile_scores_of(const Span& a, const QueryTile& tile, int s0, int s1, float* scores, int stride) const;
  void tile_sums_of(const Span& a, const QueryTile& tile, int d0, int d1, const float* scores, int stride);
  std::vector<Weight> head_weights_;
  std::vector<MatmulJob> head_products_;
};

}  // namespace mote
