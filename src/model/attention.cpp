#include "mote/model/attention.h"

#include <algorithm>

#include "mote/ops/elementwise.h"
#include "mote/ops/matmul.h"
#include "mote/util/parallel.h"

namespace mote {

MlaAttention::MlaAttention(const ModelConfig& config, const Rope& rope)
    : c_(config), rope_(rope), scale_(config.attention_scale()) {}

// Scores of every query of `tile` at positions [s0, s1) (each query up to
// its own row's position) into scores[q * stride + s]: four heads by four
// positions at a time, in runs of positions that stay in L1.
void MlaAttention::tile_scores_of(const Span& a, const QueryTile& tile, int s0, int s1, float* scores,
                                  int stride) const {
  const int slot = a.rows[tile.r0].slot;
  const auto entry = static_cast<size_t>(a.cache.entry_size());
  for (int run = s0; run < s1; run += kTilePositions) {
    const int run_end = std::min(s1, run + kTilePositions);
    for (int r = tile.r0; r < tile.r1; ++r) {
      const int end = std::min(run_end, a.rows[r].pos + 1);
      for (int h0 = 0; h0 < a.heads; h0 += 4) {
        const int k = std::min(4, a.heads - h0);
        const float* query[4];
        float* sq[4];
        for (int j = 0; j < k; ++j) {
          query[j] = q_latent_.data() + (static_cast<size_t>(r) * a.heads + h0 + j) * entry;
          sq[j] = scores + static_cast<size_t>((r - tile.r0) * a.heads + h0 + j) * stride;
        }
        int s = run;
        for (; s + 4 <= end; s += 4) {
          const float* e = a.cache.entry(slot, a.layer, s);
          float dots[16];
          dot_block(query, k, e, entry, static_cast<int>(entry), dots);
          for (int j = 0; j < k; ++j)
            for (int t = 0; t < 4; ++t) sq[j][s + t] = dots[j * 4 + t] * a.scale;
        }
        for (; s < end; ++s) {
          const float* e = a.cache.entry(slot, a.layer, s);
          for (int j = 0; j < k; ++j) sq[j][s] = dot(query[j], e, static_cast<int>(entry)) * a.scale;
        }
      }
    }
  }
}

// Latent columns [d0, d1) of every query's weighted sum over its positions,
// from its softmaxed scores: per column block, the heads of a row four at
// a time, each block of their sums held in registers over all positions.
void MlaAttention::tile_sums_of(const Span& a, const QueryTile& tile, int d0, int d1, const float* scores, int stride) {
  const float* first = a.cache.entry(a.rows[tile.r0].slot, a.layer, 0);
  const auto entry = static_cast<size_t>(a.cache.entry_size());
  for (int d = d0; d < d1; d += kSumColumns) {
    const int width = std::min(d1, d + kSumColumns) - d;
    for (int r = tile.r0; r < tile.r1; ++r) {
      for (int h0 = 0; h0 < a.heads; h0 += 4) {
        const int k = std::min(4, a.heads - h0);
        float* y[4];
        const float* p[4];
        for (int j = 0; j < k; ++j) {
          y[j] = out_latent_.data() + static_cast<size_t>(r * a.heads + h0 + j) * a.rank + d;
          std::fill(y[j], y[j] + width, 0.0f);
          p[j] = scores + static_cast<size_t>((r - tile.r0) * a.heads + h0 + j) * stride;
        }
        add_scaled_run(y, p, k, first + d, entry, a.rows[r].pos + 1, width);
      }
    }
  }
}

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
    for (int h = 0; h < heads; ++h)
      rope_.apply(q_.data() + (static_cast<size_t>(r) * heads + h) * qk + nope, rope_cos + r * half,
                  rope_sin + r * half);
  }

  // Fold each head's key up-projection into its query, q_latent = q_nope W_k,
  // and put its rotated part after it: a query laid out like a cache entry,
  // so that a score is one dot product over the entry.
  const int kv_b_rows_per_head = nope + v_dim;
  const int entry = rank + rope_dim;
  q_latent_.resize(un * heads * entry);
  const auto fold_head = [&](int h, int) {
    const Weight w_k = w.kv_b.row_slice(h * kv_b_rows_per_head, nope);
    matmul_by_columns(q_.data() + static_cast<size_t>(h) * qk, static_cast<size_t>(heads) * qk, n, w_k,
                      q_latent_.data() + static_cast<size_t>(h) * entry, static_cast<size_t>(heads) * entry);
    for (int r = 0; r < n; ++r) {
      const float* q_rope = q_.data() + (static_cast<size_t>(r) * heads + h) * qk + nope;
      std::copy(q_rope, q_rope + rope_dim, q_latent_.data() + (static_cast<size_t>(r) * heads + h) * entry + rank);
    }
  };
  parallel_for(heads, fold_head, static_cast<long>(n) * heads * nope * rank > 65536);

  // Scores and weighted latent sums. Queries that read the same cache
  // entries (the heads of a row, the rows of a sequence) go together in
  // tiles, and each tile walks the cache in short runs of positions that
  // stay in L1 while every query of the tile reads them. Each query's
  // arithmetic is the same however the work is cut: dot products per
  // position, its softmax, then the weighted sum of each latent column in
  // position order.
  tiles_.clear();
  for (int r0 = 0; r0 < n;) {
    int r1 = r0 + 1;
    while (r1 < n && r1 - r0 < kTileRows && rows[r1].slot == rows[r0].slot) ++r1;
    int context = 0;
    for (int r = r0; r < r1; ++r) context = std::max(context, rows[r].pos + 1);
    tiles_.push_back({r0, r1, context});
    r0 = r1;
  }
  int max_context = 0;
  for (const auto& row : rows) max_context = std::max(max_context, row.pos + 1);
  out_latent_.resize(un * heads * rank);
  const int threads = parallel_threads();
  const int tile_count = static_cast<int>(tiles_.size());
  const bool parallel = static_cast<long>(n) * heads * max_context * rank > 65536;
  const size_t tile_scores = static_cast<size_t>(kTileRows) * heads * max_context;
  const Span span{layer, heads, rank, scale_, rows, cache};

  if (!parallel || tile_count >= 2 * threads) {
    // Many sequences (prefill, batched decode): a tile per task, its scores
    // in the thread's scratch.
    scores_.resize(static_cast<size_t>(threads) * tile_scores);
    const auto one_tile = [&](int ti, int thread) {
      const QueryTile& tile = tiles_[static_cast<size_t>(ti)];
      float* scores = scores_.data() + static_cast<size_t>(thread) * tile_scores;
      tile_scores_of(span, tile, 0, tile.context, scores, max_context);
      for (int q = 0; q < (tile.r1 - tile.r0) * heads; ++q)
        softmax(scores + static_cast<size_t>(q) * max_context, rows[tile.r0 + q / heads].pos + 1);
      tile_sums_of(span, tile, 0, rank, scores, max_context);
    };
    parallel_for(tile_count, one_tile, parallel);
  } else {
    // Few sequences (decode): one pass over each tile's cache entries,
    // shared by all threads. Scores are cut by positions, weighted sums by
    // latent columns; neither cut changes any query's arithmetic.
    scores_.resize(static_cast<size_t>(tile_count) * tile_scores);
    const auto tile_scores_at = [&](int ti) { return scores_.data() + static_cast<size_t>(ti) * tile_scores; };
    const int blocks_per_tile = 4 * threads;
    parallel_for(tile_count * blocks_per_tile, [&](int task, int) {
      const QueryTile& tile = tiles_[static_cast<size_t>(task / blocks_per_tile)];
      const int block = task % blocks_per_tile;
      const int per_block =
          (tile.context + blocks_per_tile * kTilePositions - 1) / (blocks_per_tile * kTilePositions) * kTilePositions;
      const int s0 = std::min(tile.context, block * per_block), s1 = std::min(tile.context, s0 + per_block);
      if (s0 < s1) tile_scores_of(span, tile, s0, s1, tile_scores_at(task / blocks_per_tile), max_context);
    });
    const int queries_per_tile = kTileRows * heads;
    parallel_for(tile_count * queries_per_tile, [&](int task, int) {
      const QueryTile& tile = tiles_[static_cast<size_t>(task / queries_per_tile)];
      const int q = task % queries_per_tile;
      if (q >= (tile.r1 - tile.r0) * heads) return;
      softmax(tile_scores_at(task / queries_per_tile) + static_cast<size_t>(q) * max_context,
              rows[tile.r0 + q / heads].pos + 1);
    });
    // Column chunks of at least 16 floats, enough of them to share.
    int chunk = std::max(16, rank / (4 * threads));
    chunk = (chunk + 15) / 16 * 16;
    const int chunks = (rank + chunk - 1) / chunk;
    parallel_for(tile_count * chunks, [&](int task, int) {
      const int d0 = task % chunks * chunk;
      tile_sums_of(span, tiles_[static_cast<size_t>(task / chunks)], d0, std::min(rank, d0 + chunk),
                   tile_scores_at(task / chunks), max_context);
    });
  }

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
