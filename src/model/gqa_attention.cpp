#include "mote/model/gqa_attention.h"

#include <algorithm>

#include "mote/ops/elementwise.h"
#include "mote/ops/matmul.h"
#include "mote/util/error.h"
#include "mote/util/parallel.h"

namespace mote {

GqaAttention::GqaAttention(const ModelConfig& config, const Rope& rope)
    : c_(config), rope_(rope), scale_(config.attention_scale()) {}

void GqaAttention::forward(const AttentionWeights& w, int layer, const float* x, std::span<const StepRow> rows,
                           const float* rope_cos, const float* rope_sin, KvCache& cache, float* out) {
  const int n = static_cast<int>(rows.size());
  const int heads = c_.num_attention_heads;
  const int kv_heads = c_.num_key_value_heads;
  const int d = c_.head_dim;
  const int half = d / 2;
  const int q_width = heads * d, kv_width = kv_heads * d;
  const int group = heads / kv_heads;
  const auto eps = static_cast<float>(c_.rms_norm_eps);
  const size_t un = static_cast<size_t>(n);

  q_.resize(un * q_width);
  k_.resize(un * kv_width);
  v_.resize(un * kv_width);
  matmul(x, n, w.q, q_.data());
  matmul(x, n, w.k, k_.data());
  matmul(x, n, w.v, v_.data());
  if (!w.q_bias.empty()) {
    for (int r = 0; r < n; ++r) {
      add_in_place(q_.data() + static_cast<size_t>(r) * q_width, w.q_bias.data(), q_width);
      add_in_place(k_.data() + static_cast<size_t>(r) * kv_width, w.k_bias.data(), kv_width);
      add_in_place(v_.data() + static_cast<size_t>(r) * kv_width, w.v_bias.data(), kv_width);
    }
  }

  // Norms before rope. The new keys and values go into the cache after the
  // step's attention, which reads them from here: a sliding layer's ring
  // holds only the window, and a prompt chunk longer than the window would
  // overwrite keys its own earlier queries still need.
  // Rows of one slot come in one run of consecutive positions: a slot's
  // run starts once per step (slot_run_ holds the row it started at).
  run_row_.resize(un);
  slot_run_.assign(static_cast<size_t>(cache.slots()), -1);
  for (int r = 0; r < n; ++r) {
    const bool continues = r > 0 && rows[r].slot == rows[r - 1].slot && rows[r].pos == rows[r - 1].pos + 1;
    run_row_[r] = continues ? run_row_[r - 1] : r;
    if (continues) continue;
    int& started = slot_run_[static_cast<size_t>(rows[r].slot)];
    if (started >= 0)
      fail("rows {} and {} of a step are slot {} in separate runs of positions", started, r, rows[r].slot);
    started = r;
  }
  for (int r = 0; r < n; ++r) {
    float* q = q_.data() + static_cast<size_t>(r) * q_width;
    float* k = k_.data() + static_cast<size_t>(r) * kv_width;
    if (c_.qk_norm == QkNorm::Whole) {
      rms_norm(q, w.q_norm.data(), eps, q, q_width);
      rms_norm(k, w.k_norm.data(), eps, k, kv_width);
    } else if (c_.qk_norm == QkNorm::PerHead) {
      for (int h = 0; h < heads; ++h) rms_norm(q + h * d, w.q_norm.data(), eps, q + h * d, d);
      for (int h = 0; h < kv_heads; ++h) rms_norm(k + h * d, w.k_norm.data(), eps, k + h * d, d);
    }
    for (int h = 0; h < heads; ++h) rope_.apply(q + h * d, rope_cos + r * half, rope_sin + r * half);
    for (int h = 0; h < kv_heads; ++h) rope_.apply(k + h * d, rope_cos + r * half, rope_sin + r * half);
  }

  // Scores and weighted values, one (row, head) per task.
  int max_context = 0;
  for (const auto& row : rows) max_context = std::max(max_context, row.pos + 1);
  const int threads = parallel_threads();
  // A sliding layer's queries see the last sliding_window positions, their own included.
  const int window = c_.is_sliding_layer(layer) ? c_.sliding_window : 0;
  // One more score per row: the head's sink, a softmax column then dropped.
  const bool sinks = !w.sinks.empty();
  const int stride = max_context + 1;
  scores_.resize(static_cast<size_t>(threads) * stride);
  attn_.resize(un * q_width);
  const int tasks = n * heads;
  const bool parallel = static_cast<long>(tasks) * max_context * d > 65536;
  const auto one_task = [&](int task, int thread) {
    const int r = task / heads;
    const int h = task % heads;
    const int kv = h / group;
    const StepRow& row = rows[r];
    float* scores = scores_.data() + static_cast<size_t>(thread) * stride;
    const float* q = q_.data() + static_cast<size_t>(r) * q_width + static_cast<size_t>(h) * d;
    const int first = window > 0 ? std::max(0, row.pos + 1 - window) : 0;
    const int context = row.pos + 1 - first;
    // Position p's key and value: this step's own rows from p0 on, the cache before.
    const int run = run_row_[r], p0 = rows[run].pos;
    const auto key = [&](int p) {
      return p >= p0 ? k_.data() + static_cast<size_t>(run + p - p0) * kv_width : cache.entry(row.slot, layer, p);
    };
    const auto value = [&](int p) {
      return p >= p0 ? v_.data() + static_cast<size_t>(run + p - p0) * kv_width
                     : cache.entry(row.slot, layer, p) + kv_width;
    };
    for (int s = 0; s < context; ++s) scores[s] = dot(q, key(first + s) + static_cast<size_t>(kv) * d, d) * scale_;
    if (sinks) scores[context] = w.sinks[static_cast<size_t>(h)];
    softmax(scores, context + (sinks ? 1 : 0));
    float* o = attn_.data() + static_cast<size_t>(r) * q_width + static_cast<size_t>(h) * d;
    std::fill(o, o + d, 0.0f);
    for (int s = 0; s < context; ++s) add_scaled(o, scores[s], value(first + s) + static_cast<size_t>(kv) * d, d);
  };
  parallel_for(tasks, one_task, parallel);
  for (int r = 0; r < n; ++r) {
    float* entry = cache.entry(rows[r].slot, layer, rows[r].pos);
    const float* k = k_.data() + static_cast<size_t>(r) * kv_width;
    const float* v = v_.data() + static_cast<size_t>(r) * kv_width;
    std::copy(k, k + kv_width, entry);
    std::copy(v, v + kv_width, entry + kv_width);
  }
  matmul(attn_.data(), n, w.o, out);
  if (!w.o_bias.empty()) {
    for (int r = 0; r < n; ++r)
      add_in_place(out + static_cast<size_t>(r) * c_.hidden_size, w.o_bias.data(), c_.hidden_size);
  }
}

}  // namespace mote
