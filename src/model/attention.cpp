#include "mote/model/attention.h"

#include <omp.h>

#include <algorithm>

#include "mote/ops/elementwise.h"
#include "mote/ops/matmul.h"

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
  for (int h = 0; h < heads; ++h) {
    const Weight w_k = w.kv_b.row_slice(h * kv_b_rows_per_head, nope);
    matmul_by_columns(q_.data() + static_cast<size_t>(h) * qk, static_cast<size_t>(heads) * qk, n, w_k,
                      q_latent_.data() + static_cast<size_t>(h) * rank, static_cast<size_t>(heads) * rank);
  }

  // Scores and weighted latent sums, one (row, head) per task.
  int max_context = 0;
  for (const auto& row : rows) max_context = std::max(max_context, row.pos + 1);
  const int threads = omp_get_max_threads();
  scores_.resize(static_cast<size_t>(threads) * max_context);
  out_latent_.resize(un * heads * rank);
  const int tasks = n * heads;
  const bool parallel = static_cast<long>(tasks) * max_context * rank > 65536;
#pragma omp parallel for schedule(static) if (parallel)
  for (int task = 0; task < tasks; ++task) {
    const int r = task / heads;
    const StepRow& row = rows[r];
    float* scores = scores_.data() + static_cast<size_t>(omp_get_thread_num()) * max_context;
    const float* q_lat = q_latent_.data() + static_cast<size_t>(task) * rank;
    const float* q_rope = q_.data() + static_cast<size_t>(task) * qk + nope;
    const int context = row.pos + 1;
    for (int s = 0; s < context; ++s) {
      const float* entry = cache.entry(row.slot, layer, s);
      scores[s] = (dot(q_lat, entry, rank) + dot(q_rope, entry + rank, rope_dim)) * scale_;
    }
    softmax(scores, context);
    float* o_lat = out_latent_.data() + static_cast<size_t>(task) * rank;
    std::fill(o_lat, o_lat + rank, 0.0f);
    for (int s = 0; s < context; ++s) add_scaled(o_lat, scores[s], cache.entry(row.slot, layer, s), rank);
  }

  // Value up-projection per head, then the output projection.
  attn_v_.resize(un * heads * v_dim);
  for (int h = 0; h < heads; ++h) {
    const Weight w_v = w.kv_b.row_slice(h * kv_b_rows_per_head + nope, v_dim);
    matmul(out_latent_.data() + static_cast<size_t>(h) * rank, static_cast<size_t>(heads) * rank, n, w_v,
           attn_v_.data() + static_cast<size_t>(h) * v_dim, static_cast<size_t>(heads) * v_dim);
  }
  matmul(attn_v_.data(), n, w.o, out);
}

}  // namespace mote
