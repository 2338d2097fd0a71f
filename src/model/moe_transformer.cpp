#include "mote/model/moe_transformer.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "mote/model/expert_counters.h"
#include "mote/model/expert_mask.h"
#include "mote/model/family.h"
#include "mote/ops/elementwise.h"
#include "mote/ops/matmul.h"
#include "mote/ops/rows.h"
#include "mote/util/error.h"

namespace mote {

MoeTransformer::MoeTransformer(const ModelConfig& config, const ModelWeights& weights, ExpertExecutor& experts)
    : c_(config),
      w_(weights),
      rope_(config.rope()),
      attention_(config, rope_),
      gqa_(config, rope_),
      router_(config),
      experts_(experts),
      moe_layers_(config.moe_layers()) {}

void MoeTransformer::forward(std::span<const StepRow> rows, KvCache& cache, std::span<const int32_t> logit_rows,
                             float* logits, const ForwardTaps& taps) {
  const int n = static_cast<int>(rows.size());
  if (n == 0) return;
  const int hidden = c_.hidden_size;
  const auto eps = static_cast<float>(c_.rms_norm_eps);
  embed(rows, cache);
  const RowView<float> h(h_.data(), hidden), x(x_.data(), hidden);

  // Rows resuming at a later layer come after those that start earlier, so
  // the rows that take part in any op are a prefix of the step's. Rows
  // that skip a MoE layer have no routing there.
  const bool resuming = rows[n - 1].resume_layer >= 0;
  if (resuming) clear_routing(taps, n, 0, moe_layer_count());
  const auto rows_resumed_before = [&](int l) {
    if (!resuming) return n;
    return static_cast<int>(
        std::partition_point(rows.begin(), rows.end(), [&](const StepRow& row) { return row.resume_layer < l; }) -
        rows.begin());
  };

  int moe_layer = 0;
  for (int l = 0; l < c_.num_hidden_layers; ++l) {
    const LayerWeights& lw = w_.layers[l];
    // Rows [0, attending) take part in this layer's attention (they resumed
    // before it), rows [0, feeding) in its feed-forward (the rows resuming
    // here join with the residual they carry).
    const int attending = rows_resumed_before(l), feeding = rows_resumed_before(l + 1);

    // h += attention(norm(h))
    if (attending > 0) {
      for (int r = 0; r < attending; ++r) rms_norm(h[r], lw.input_norm.data(), eps, x[r], hidden);
      const std::span<const StepRow> att_rows = rows.first(static_cast<size_t>(attending));
      if (c_.attention == AttentionKind::Mla) {
        attention_.forward(lw.attention, l, x_.data(), att_rows, rope_cos_.data(), rope_sin_.data(), cache,
                           branch_.data());
      } else {
        gqa_.forward(lw.attention, l, x_.data(), att_rows, rope_cos_.data(), rope_sin_.data(), cache, branch_.data());
      }
      add_in_place(h_.data(), branch_.data(), attending * hidden);
    }
    for (int r = attending; r < feeding; ++r) std::copy_n(rows[r].resume_h, hidden, h[r]);
    if (lw.is_moe) {
      for (int r = 0; r < feeding; ++r) {
        if (rows[r].capture != nullptr)
          std::copy_n(h[r], hidden, rows[r].capture + static_cast<size_t>(moe_layer) * hidden);
      }
    }

    // h += ffn(norm(h)): the MoE block or the dense MLP
    if (taps.last_ffn_logit_rows_only && l + 1 == c_.num_hidden_layers) {
      last_ffn(lw, l, moe_layer, rows, logit_rows, taps);
      break;
    }
    for (int r = 0; r < feeding; ++r) rms_norm(h[r], lw.post_attention_norm.data(), eps, x[r], hidden);
    if (lw.is_moe) {
      // A MoE layer is one exchange round even when no row reaches it yet.
      moe(lw, l, moe_layer++, x_.data(), rows.first(static_cast<size_t>(feeding)), branch_.data(), taps);
    } else if (feeding > 0) {
      ffn_.forward(lw.dense, x_.data(), feeding, branch_.data());
    }
    add_in_place(h_.data(), branch_.data(), feeding * hidden);
  }

  // logits = lm_head(norm(h)), for the rows whose logits are used
  if (logit_rows.empty()) return;
  final_rows_.resize(logit_rows.size() * hidden);
  const RowView<float> out(final_rows_.data(), hidden);
  for (size_t i = 0; i < logit_rows.size(); ++i) rms_norm(h[logit_rows[i]], w_.final_norm.data(), eps, out[i], hidden);
  matmul(final_rows_.data(), static_cast<int>(logit_rows.size()), w_.lm_head, logits);
}

void MoeTransformer::embed(std::span<const StepRow> rows, const KvCache& cache) {
  const int n = static_cast<int>(rows.size()), hidden = c_.hidden_size, half = c_.rope_dim() / 2;
  const size_t hn = static_cast<size_t>(n) * hidden;
  h_.resize(hn);
  x_.resize(hn);
  branch_.resize(hn);
  rope_cos_.resize(static_cast<size_t>(n) * half);
  rope_sin_.resize(static_cast<size_t>(n) * half);
  const RowView<float> h(h_.data(), hidden), cos(rope_cos_.data(), half), sin(rope_sin_.data(), half);
  for (int r = 0; r < n; ++r) {
    const StepRow& row = rows[r];
    if (row.token < 0 || row.token >= c_.vocab_size)
      fail("token id {} is outside the model's vocabulary ({})", row.token, c_.vocab_size);
    if (row.pos < 0 || row.pos >= cache.capacity(row.slot)) {
      fail("position {} is outside the KV cache of slot {} ({} positions)", row.pos, row.slot,
           cache.capacity(row.slot));
    }
    if (row.resume_layer >= 0) {
      if (row.resume_layer >= c_.num_hidden_layers || !w_.layers[row.resume_layer].is_moe || row.resume_h == nullptr) {
        fail("row {} resumes at decoder layer {}, which is not a MoE layer of the model, or without its residual", r,
             row.resume_layer);
      }
    } else {
      widen_row(w_.embed, row.token, h[r]);
    }
    if (r > 0 && row.resume_layer < rows[r - 1].resume_layer)
      fail("the rows of a step are not ordered by the layer they resume at");
    rope_.angles(row.pos, cos[r], sin[r]);
  }
}

void MoeTransformer::clear_routing(const ForwardTaps& taps, int n, int first_moe_layer, int moe_layers) const {
  if (taps.routing_experts == nullptr) return;
  const int layers = moe_layer_count(), k = router_.top_k();
  for (int r = 0; r < n; ++r) {
    const size_t at = (static_cast<size_t>(r) * layers + static_cast<size_t>(first_moe_layer)) * k;
    const size_t width = static_cast<size_t>(moe_layers) * k;
    std::fill_n(taps.routing_experts + at, width, -1);
    std::fill_n(taps.routing_weights + at, width, 0.0f);
    if (taps.routing_sent != nullptr) std::fill_n(taps.routing_sent + at, width, uint8_t{0});
  }
}

void MoeTransformer::last_ffn(const LayerWeights& lw, int layer, int moe_layer, std::span<const StepRow> rows,
                              std::span<const int32_t> logit_rows, const ForwardTaps& taps) {
  // Every row is normed and, at a MoE layer, routed (profiles record every
  // row's routing); only the rows whose logits are asked for go on through
  // the experts, the shared expert or the dense layer. Each row's result
  // does not depend on the others, so theirs is what the whole batch gives.
  const int hidden = c_.hidden_size, n = static_cast<int>(rows.size()), kept = static_cast<int>(logit_rows.size());
  const auto eps = static_cast<float>(c_.rms_norm_eps);
  const int k = router_.top_k();
  sub_rows_.clear();
  sub_x_.resize(static_cast<size_t>(kept) * hidden);
  sub_out_.resize(sub_x_.size());
  const RowView<float> h(h_.data(), hidden), x(x_.data(), hidden), sub_x(sub_x_.data(), hidden),
      sub_out(sub_out_.data(), hidden);
  if (lw.is_moe) {
    for (int r = 0; r < n; ++r) rms_norm(h[r], lw.post_attention_norm.data(), eps, x[r], hidden);
    route(lw, moe_layer, x_.data(), rows, taps, &logit_rows);
  }
  sub_sent_.resize(static_cast<size_t>(kept) * k);
  sub_gates_.resize(sub_sent_.size());
  for (int i = 0; i < kept; ++i) {
    const int32_t r = logit_rows[i];
    sub_rows_.push_back(rows[r]);
    float* xi = sub_x[i];
    if (lw.is_moe) {
      std::copy_n(x[r], hidden, xi);
      std::copy_n(&sent_[static_cast<size_t>(r) * k], k, &sub_sent_[static_cast<size_t>(i) * k]);
      std::copy_n(&gate_weights_[static_cast<size_t>(r) * k], k, &sub_gates_[static_cast<size_t>(i) * k]);
    } else {
      rms_norm(h[r], lw.post_attention_norm.data(), eps, xi, hidden);
    }
  }
  if (lw.is_moe) {
    // One exchange round, even when no row of this step needs logits.
    run_experts(lw, layer, moe_layer, sub_x_.data(), sub_rows_, sub_sent_.data(), sub_gates_.data(), sub_out_.data());
  } else if (kept > 0) {
    ffn_.forward(lw.dense, sub_x_.data(), kept, sub_out_.data());
  }
  for (int i = 0; i < kept; ++i) add_in_place(h[logit_rows[i]], sub_out[i], hidden);
}

void MoeTransformer::moe(const LayerWeights& w, int layer, int moe_layer, const float* x, std::span<const StepRow> rows,
                         float* out, const ForwardTaps& taps) {
  route(w, moe_layer, x, rows, taps, nullptr);
  run_experts(w, layer, moe_layer, x, rows, sent_.data(), gate_weights_.data(), out);
}

void MoeTransformer::route(const LayerWeights& w, int moe_layer, const float* x, std::span<const StepRow> rows,
                           const ForwardTaps& taps, const std::span<const int32_t>* run_rows) {
  const int n = static_cast<int>(rows.size());
  const int n_experts = c_.n_routed_experts;
  const int k = router_.top_k();
  const int layers = moe_layer_count();

  // Route: logits in fp32 from the router weights, then selection per token.
  router_logits_.resize(static_cast<size_t>(n) * n_experts);
  router_scratch_.resize(static_cast<size_t>(router_.scratch_size()));
  chosen_.assign(static_cast<size_t>(n) * k, -1);
  gate_weights_.assign(static_cast<size_t>(n) * k, 0.0f);
  dispatch_.assign(static_cast<size_t>(n) * k, 0);
  matmul(x, n, w.router.gate, router_logits_.data());
  if (!w.router.logit_bias.empty()) {
    for (int r = 0; r < n; ++r)
      add_in_place(&router_logits_[static_cast<size_t>(r) * n_experts], w.router.logit_bias.data(), n_experts);
  }
  if (taps.router_nonfinite != nullptr) {
    for (int r = 0; r < n; ++r) {
      const float* l = &router_logits_[static_cast<size_t>(r) * n_experts];
      if (taps.router_nonfinite[r] < 0 && !std::all_of(l, l + n_experts, [](float v) { return std::isfinite(v); })) {
        taps.router_nonfinite[r] = static_cast<int16_t>(moe_layer);
      }
    }
  }
  for (int r = 0; r < n; ++r) {
    const size_t at = static_cast<size_t>(r) * k;
    router_.route(&router_logits_[static_cast<size_t>(r) * n_experts],
                  w.router.bias.empty() ? nullptr : w.router.bias.data(), moe_layer, rows[r].mask, &chosen_[at],
                  &gate_weights_[at], &dispatch_[at], router_scratch_.data());
  }
  // Experts that are sent the token: the routed ones minus those switched
  // off with the zero policy (routed, but contributing nothing).
  sent_ = chosen_;
  for (size_t i = 0; i < sent_.size(); ++i) {
    if (!dispatch_[i]) sent_[i] = -1;
  }
  // Counted apart: the decisions whose experts run (what the ranks' counters
  // must equal) and those of rows not in `run_rows` (ascending) when given.
  size_t next_run = 0;
  for (int r = 0; r < n; ++r) {
    ExpertCounters* counts = taps.routing_counts;
    if (run_rows != nullptr) {
      const bool runs = next_run < run_rows->size() && (*run_rows)[next_run] == r;
      next_run += runs;
      if (!runs) counts = taps.routed_not_run_counts;
    }
    if (counts == nullptr) continue;
    for (int s = 0; s < k; ++s) {
      const size_t slot = static_cast<size_t>(r) * k + s;
      if (sent_[slot] >= 0) counts->add(rows[r].cls, rows[r].phase, moe_layer, sent_[slot], gate_weights_[slot]);
    }
  }
  if (taps.routing_experts != nullptr) {
    for (int r = 0; r < n; ++r) {
      const size_t dst = (static_cast<size_t>(r) * layers + moe_layer) * k;
      std::copy_n(&chosen_[static_cast<size_t>(r) * k], k, taps.routing_experts + dst);
      std::copy_n(&gate_weights_[static_cast<size_t>(r) * k], k, taps.routing_weights + dst);
      if (taps.routing_sent != nullptr) {
        for (int s = 0; s < k; ++s) taps.routing_sent[dst + s] = sent_[static_cast<size_t>(r) * k + s] >= 0;
      }
    }
  }
}

void MoeTransformer::run_experts(const LayerWeights& w, int layer, int moe_layer, const float* x,
                                 std::span<const StepRow> rows, const int32_t* sent, const float* gates, float* out) {
  const int n = static_cast<int>(rows.size());
  const int hidden = c_.hidden_size;
  const int k = router_.top_k();
  // Routed experts, then the weighted sum in top-k slot order (never in the
  // order results arrive), then the shared expert.
  experts_.begin({layer, moe_layer, x, n, sent, gates, k, rows});
  if (!w.shared.empty()) {
    // Runs while the routed experts' tokens are in flight to their ranks.
    shared_out_.resize(static_cast<size_t>(n) * hidden);
    ffn_.forward(w.shared, x, n, shared_out_.data());
  }
  experts_.finish(expert_rows_);
  const RowView<float> y_rows(out, hidden), shared(shared_out_.data(), hidden);
  for (int r = 0; r < n; ++r) {
    float* y = y_rows[r];
    std::fill(y, y + hidden, 0.0f);
    for (int s = 0; s < k; ++s) {
      const size_t slot = static_cast<size_t>(r) * k + s;
      if (sent[slot] < 0) continue;
      add_scaled(y, gates[slot], expert_rows_[slot], hidden);
    }
    if (w.shared.empty()) continue;
    const float shared_gain = rows[r].mask != nullptr ? rows[r].mask->shared_gain : 1.0f;
    if (shared_gain == 1.0f) {
      add_in_place(y, shared[r], hidden);
    } else if (shared_gain != 0.0f) {
      add_scaled(y, shared_gain, shared[r], hidden);
    }
  }
}

std::string MoeTransformer::router_tensor(int moe_layer) const {
  return fmt::format("model.layers.{}.{}", moe_layers_.at(static_cast<size_t>(moe_layer)), family_of(c_).names.router);
}

}  // namespace mote
