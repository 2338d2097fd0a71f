#include "mote/model/attention.h"

#include <algorithm>

#include "mote/ops/elementwise.h"
#include "mote/ops/matmul.h"
#include "mote/util/parallel.h"

namespace mote {

MlaAttention::MlaAttention(const ModelConfig& config, const Rope& rope)
    : c_(config), rope_(rope), scale_(config.attention_scale()) {}

void MlaAttention::forward(const AttentionWeights& w, int layer, const float* x, std::span<const StepRow> rows,
                           const float* rope_cos, const float* rope_sin, KvCache& cache, float* out) {
  const int n = static_cast<int>(rows.size());
  const int heads = c_.num_attention_heads;
  const int nope = c_.qk_nope_head_dim;
  const int rope_dim = c_.qk_rope_head_dim;
  const int qk = c_.qk_head_dim();
  const int v_dim = c_.v_head_dim;
  const int rank = c_.kv_lora_rank;
  const int half = rope_dim / 2;
  const auto eps = static_cast<float>(c_.rms_norm_eps);
  const size_t un = static_cast<size_t>(n);

  // Queries: [rows, heads * qk], through the low-rank bottleneck when there is one.
  q_.resize(un * heads * qk);
  if (c_.q_lora_rank > 0) {
    q_a_.resize(un * c_.q_lora_rank);
    matmul(x, n, w.q_a, q_a_.data());
    for (int r = 0; r < n; ++r) {
      float* row = q_a_.data() + static_cast<size_t>(r) * c_.q_lora_rank;
      rms_norm(row, w.q_a_norm.data(), eps, row, c_.q_lora_rank);
    }
    matmul(q_a_.data(), n, w.q_b, q_.data());
  } else {
    matmul(x, n, w.q, q_.data());
  }

  // Compressed KV for the new tokens, normalised and rotated, into the cache.
  kv_.resize(un * (rank + rope_dim));
  matmul(x, n, w.kv_a, kv_.data());
  for (int r = 0; r < n; ++r) {
    const float* src = kv_.data() + static_cast<size_t>(r) * (rank + rope_dim);
    float* entry = cache.entry(rows[r].slot, layer, rows[r].pos);
    rms_norm(src, w.kv_a_norm.data(), eps, entry, rank);
    std::copy(src + rank, src + rank + rope_dim, entry + rank);
    rope_.apply(entry + rank, rope_cos + r * half, rope_sin + r * half);
    for (int h = 0; h < heads; ++h) rope_.apply(q_.data() + (static_cast<size_t>(r) * heads + h) * qk + nope, rope_cos + r * half, rope_sin + r * half);
  }

  // Fold each head's key up-projection into its query: q_latent = q_nope W_k.
  const int kv_b_rows_per_head = nope + v_dim;
  q_latent_.resize(un * heads * rank);
  const auto fold_head = [&](int h, int) {
    const Weight w_k = w.kv_b.row_slice(h * kv_b_rows_per_head, nope);
    matmul_by_columns(q_.data() + static_cast<size_t>(h) * qk, static_cast<size_t>(heads) * qk, n, w_k,
                      q_latent_.data() + static_cast<size_t>(h) * rank, static_cast<size_t>(heads) * rank);
  };
  parallel_for(heads, fold_head, static_cast<long>(n) * heads * nope * rank > 65536);

  // Scores and weighted latent sums. Queries that read the same cache
  // entries (heads of one row, rows of one sequence) go together in tiles,
  // and each tile walks the cache in short runs of positions that stay in
  // L1 while every query of the tile reads them: one pass over the cache per
  // tile instead of one per (row, head). Each query's arithmetic is the
  // same in any tile: dot products in position order, then its softmax, then
  // the weighted sum in position order.
  tiles_.clear();
  const int threads = parallel_threads();
  for (int r0 = 0; r0 < n;) {
    int r1 = r0 + 1;
    while (r1 < n && r1 - r0 < kTileRows && rows[r1].slot == rows[r0].slot) ++r1;
    tiles_.push_back({r0, r1, 0, heads});
    r0 = r1;
  }
  // Few tiles (decode of few sequences): split heads so every thread has work.
  for (int split = 2; static_cast<int>(tiles_.size()) < 2 * threads && heads % split == 0 && split <= heads; split *= 2) {
    std::vector<QueryTile> finer;
    for (const QueryTile& t : tiles_) {
      const int mid = (t.h0 + t.h1) / 2;
      finer.push_back({t.r0, t.r1, t.h0, mid});
      finer.push_back({t.r0, t.r1, mid, t.h1});
    }
    tiles_.swap(finer);
  }
  int max_context = 0;
  for (const auto& row : rows) max_context = std::max(max_context, row.pos + 1);
  const size_t tile_scores = static_cast<size_t>(kTileRows) * heads * max_context;
  scores_.resize(static_cast<size_t>(threads) * tile_scores);
  out_latent_.resize(un * heads * rank);
  const int tile_count = static_cast<int>(tiles_.size());
  const bool parallel = static_cast<long>(n) * heads * max_context * rank > 65536;
  const auto one_tile = [&](int ti, int thread) {
    const QueryTile tile = tiles_[static_cast<size_t>(ti)];
    const int slot = rows[tile.r0].slot;
    const int tile_heads = tile.h1 - tile.h0;
    float* scores = scores_.data() + static_cast<size_t>(thread) * tile_scores;
    const auto task_of = [&](int q) { return (tile.r0 + q / tile_heads) * heads + tile.h0 + q % tile_heads; };
    const int queries = (tile.r1 - tile.r0) * tile_heads;
    int tile_context = 0;
    for (int r = tile.r0; r < tile.r1; ++r) tile_context = std::max(tile_context, rows[r].pos + 1);
    for (int s0 = 0; s0 < tile_context; s0 += kTilePositions) {
      const int s1 = std::min(tile_context, s0 + kTilePositions);
      for (int q = 0; q < queries; ++q) {
        const int task = task_of(q);
        const int end = std::min(s1, rows[task / heads].pos + 1);
        const float* q_lat = q_latent_.data() + static_cast<size_t>(task) * rank;
        const float* q_rope = q_.data() + static_cast<size_t>(task) * qk + nope;
        float* sq = scores + static_cast<size_t>(q) * max_context;
        int s = s0;
        for (; s + 4 <= end; s += 4) {
          const float* entries[4] = {cache.entry(slot, layer, s), cache.entry(slot, layer, s + 1), cache.entry(slot, layer, s + 2),
                                     cache.entry(slot, layer, s + 3)};
          const float* ropes[4] = {entries[0] + rank, entries[1] + rank, entries[2] + rank, entries[3] + rank};
          float lat[4], rot[4];
          dot4(q_lat, entries, rank, lat);
          dot4(q_rope, ropes, rope_dim, rot);
          for (int k = 0; k < 4; ++k) sq[s + k] = (lat[k] + rot[k]) * scale_;
        }
        for (; s < end; ++s) {
          const float* entry = cache.entry(slot, layer, s);
          sq[s] = (dot(q_lat, entry, rank) + dot(q_rope, entry + rank, rope_dim)) * scale_;
        }
      }
    }
    for (int q = 0; q < queries; ++q) {
      const int task = task_of(q);
      softmax(scores + static_cast<size_t>(q) * max_context, rows[task / heads].pos + 1);
      float* o_lat = out_latent_.data() + static_cast<size_t>(task) * rank;
      std::fill(o_lat, o_lat + rank, 0.0f);
    }
    for (int s0 = 0; s0 < tile_context; s0 += kTilePositions) {
      const int s1 = std::min(tile_context, s0 + kTilePositions);
      for (int q = 0; q < queries; ++q) {
        const int task = task_of(q);
        const int end = std::min(s1, rows[task / heads].pos + 1);
        const float* sq = scores + static_cast<size_t>(q) * max_context;
        float* o_lat = out_latent_.data() + static_cast<size_t>(task) * rank;
        int s = s0;
        for (; s + 4 <= end; s += 4) {
          const float* entries[4] = {cache.entry(slot, layer, s), cache.entry(slot, layer, s + 1), cache.entry(slot, layer, s + 2),
                                     cache.entry(slot, layer, s + 3)};
          add_scaled4(o_lat, sq + s, entries, rank);
        }
        for (; s < end; ++s) add_scaled(o_lat, sq[s], cache.entry(slot, layer, s), rank);
      }
    }
  };
  parallel_for(tile_count, one_tile, parallel);

  // Value up-projection per head, then the output projection.
  attn_v_.resize(un * heads * v_dim);
  head_weights_.clear();
  for (int h = 0; h < heads; ++h) head_weights_.push_back(w.kv_b.row_slice(h * kv_b_rows_per_head + nope, v_dim));
  head_products_.clear();
  for (int h = 0; h < heads; ++h) {
    head_products_.push_back({out_latent_.data() + static_cast<size_t>(h) * rank, static_cast<size_t>(heads) * rank, n,
                              &head_weights_[static_cast<size_t>(h)], attn_v_.data() + static_cast<size_t>(h) * v_dim,
                              static_cast<size_t>(heads) * v_dim});
  }
  matmul_group(head_products_);
  matmul(attn_v_.data(), n, w.o, out);
}

}  // namespace mote
