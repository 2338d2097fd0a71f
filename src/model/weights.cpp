#include "mote/model/weights.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <tuple>

#include <sys/mman.h>
#include <unistd.h>

#include <fmt/format.h>

#include "mote/model/family.h"
#include "mote/util/error.h"
#include "mote/util/stop_signal.h"

namespace mote {
namespace {

// Names are the family's table (src/model/families/); these only compose them.
struct Names {
  static std::string layer(int l, const std::string& rest) { return fmt::format("model.layers.{}.{}", l, rest); }
  static std::string expert(const TensorNames& n, int e) { return fmt::format("{}.{}", n.experts, e); }
  static constexpr const char* kLayerPrefix = "model.layers.";
};

constexpr const char* kScaleSuffix = "_scale_inv";

class Loader {
 public:
  Loader(const WeightStore& store, const ModelConfig& config, WeightMemory memory, ModelWeights& out)
      : store_(store), config_(config), names_(family_of(config).names), memory_(memory), out_(out) {}

  Weight matrix(const std::string& name, int rows, int cols) {
    const TensorView& t = checked(name);
    if (t.shape.size() != 2 || t.shape[0] != rows || t.shape[1] != cols) {
      fail("tensor '{}' in {}: shape {} but config.json implies [{}, {}]", name, store_.describe(), t.shape_string(),
           rows, cols);
    }
    Weight w{t.dtype, rows, cols, memory_ == WeightMemory::Copy ? copy(t.data, t.nbytes) : t.data};
    const std::string scale_name = name + kScaleSuffix;
    const TensorView* scale = store_.find(scale_name);
    if (t.dtype != DType::F8_E4M3) {
      if (scale != nullptr) {
        fail("tensor '{}' in {}: a block scale for '{}', which is {}, not F8_E4M3", scale_name, store_.describe(), name,
             dtype_name(t.dtype));
      }
      other_.push_back(w);
      return w;
    }
    if (!config_.fp8) {
      fail("tensor '{}' in {}: dtype F8_E4M3 but config.json has no quantization_config saying how to read it", name,
           store_.describe());
    }
    if (scale == nullptr)
      fail("tensor '{}' in {}: FP8 weight without its scale tensor '{}'", name, store_.describe(), scale_name);
    const int64_t scale_rows = (rows + kFp8Block - 1) / kFp8Block, scale_cols = (cols + kFp8Block - 1) / kFp8Block;
    if (scale->dtype != DType::F32) {
      fail("tensor '{}' in {}: dtype {} but FP8 block scales must be F32", scale_name, store_.describe(),
           dtype_name(scale->dtype));
    }
    if (scale->shape != std::vector<int64_t>{scale_rows, scale_cols}) {
      fail("tensor '{}' in {}: shape {} but the 128x128 blocks of '{}' [{}, {}] need [{}, {}]", scale_name,
           store_.describe(), scale->shape_string(), name, rows, cols, scale_rows, scale_cols);
    }
    for (int64_t i = 0; i < scale_rows * scale_cols; ++i) {
      float v;
      std::memcpy(&v, scale->data + 4 * i, 4);
      if (!std::isfinite(v)) {
        fail("tensor '{}' in {}: block [{}, {}] has the non-finite scale {}", scale_name, store_.describe(),
             i / scale_cols, i % scale_cols, v);
      }
    }
    w.scales = scale->data;
    out_.file_bytes += scale->nbytes;
    fp8_.push_back({name, w});
    return w;
  }

  std::vector<float> vector(const std::string& name, int n) const {
    const TensorView& t = checked(name);
    if (t.shape.size() != 1 || t.shape[0] != n) {
      fail("tensor '{}' in {}: shape {} but config.json implies [{}]", name, store_.describe(), t.shape_string(), n);
    }
    if (t.dtype == DType::F8_E4M3)
      fail("tensor '{}' in {}: a 1-D tensor in F8_E4M3; only matrices may be FP8", name, store_.describe());
    std::vector<float> v = widen_all(Weight{t.dtype, 1, n, t.data});
    for (size_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i]))
        fail("tensor '{}' in {}: element {} is {}; norms and router biases must be finite", name, store_.describe(), i,
             v[i]);
    }
    return v;
  }

  // The router's matrix, checked to be finite: a NaN or infinite weight
  // there would route every token of the layer to the lowest-numbered
  // experts without a word. Small enough to read once at load.
  Weight router_matrix(const std::string& name, int rows, int cols) {
    const Weight w = matrix(name, rows, cols);
    if (w.dtype == DType::F8_E4M3) return w;  // every FP8 byte is checked with the others
    std::vector<float> row(static_cast<size_t>(cols));
    for (int r = 0; r < rows; ++r) {
      widen_row(w, r, row.data());
      for (int c = 0; c < cols; ++c) {
        if (!std::isfinite(row[static_cast<size_t>(c)])) {
          fail("tensor '{}' in {}: element [{}, {}] is {}; the router's weights must be finite", name,
               store_.describe(), r, c, row[static_cast<size_t>(c)]);
        }
      }
    }
    return w;
  }

  // Maps every page of the other matrices loaded, in parallel, before the
  // first step: otherwise the first tokens that reach each expert pay for
  // its page faults (a few GB/s instead of the memory's tens), which is
  // what a short run or a benchmark then measures.
  void fault_in() const {
    constexpr size_t kPage = 4096;
#pragma omp parallel for schedule(dynamic)
    for (size_t k = 0; k < other_.size(); ++k) {
      // Volatile reads: performed although their values are not used.
      const auto* bytes = reinterpret_cast<const volatile uint8_t*>(other_[k].data);
      const size_t n = other_[k].bytes();
      for (size_t i = 0; i < n; i += kPage) (void)bytes[i];
      if (n > 0) (void)bytes[n - 1];
    }
  }

  // Every FP8 byte of the matrices loaded is checked once: e4m3 has no
  // infinities, and 0x7F / 0xFF (NaN) would poison every output they touch.
  // This also brings the pages in, as the first step would.
  void check_fp8_values() const {
    std::vector<std::string> errors(fp8_.size());
#pragma omp parallel for schedule(dynamic)
    for (size_t k = 0; k < fp8_.size(); ++k) {
      const Weight& w = fp8_[k].second;
      const auto* bytes = reinterpret_cast<const uint8_t*>(w.data);
      const size_t n = w.bytes();
      uint8_t any = 0;
      for (size_t i = 0; i < n; ++i) any |= static_cast<uint8_t>((bytes[i] & 0x7F) == 0x7F);
      if (any == 0) continue;
      for (size_t i = 0; i < n; ++i) {
        if (e4m3_is_nan(bytes[i])) {
          errors[k] = fmt::format("tensor '{}' in {}: FP8 byte 0x{:02x} at [{}, {}] encodes NaN", fp8_[k].first,
                                  store_.describe(), bytes[i], i / static_cast<size_t>(w.cols),
                                  i % static_cast<size_t>(w.cols));
          break;
        }
      }
    }
    for (const auto& e : errors) {
      if (!e.empty()) throw Error(e);
    }
  }

  // gpt-oss: one projection of every expert of a layer, stacked and stored
  // as MXFP4: "<name>_blocks" U8 [experts, rows, cols / 32, 16],
  // "<name>_scales" U8 [experts, rows, cols / 32], "<name>_bias" [experts, rows].
  struct Stacked {
    std::string name;
    const TensorView* blocks;
    const TensorView* scales;
    const TensorView* bias;
    int rows, cols;
  };
  Stacked stacked(const std::string& name, int experts, int rows, int cols) const {
    Stacked t{name, store_.find(name + "_blocks"), store_.find(name + "_scales"), store_.find(name + "_bias"), rows,
              cols};
    const int64_t groups = cols / kMxfp4Block;
    if (t.blocks == nullptr) fail("tensor '{}_blocks' is not in {}", name, store_.describe());
    if (t.scales == nullptr)
      fail("tensor '{}_blocks' in {}: MXFP4 blocks without their scales '{}_scales'", name, store_.describe(), name);
    if (t.bias == nullptr) fail("tensor '{}_bias' is not in {}", name, store_.describe());
    for (const auto& [view, suffix, shape] :
         {std::tuple{t.blocks, "_blocks", std::vector<int64_t>{experts, rows, groups, kMxfp4Block / 2}},
          std::tuple{t.scales, "_scales", std::vector<int64_t>{experts, rows, groups}}}) {
      if (view->dtype != DType::U8) {
        fail("tensor '{}{}' in {}: dtype {} but MXFP4 {} are U8", name, suffix, store_.describe(),
             dtype_name(view->dtype), suffix + 1);
      }
      if (view->shape != shape) {
        fail("tensor '{}{}' in {}: shape {} but config.json implies [{}, {}, {}{}]", name, suffix, store_.describe(),
             view->shape_string(), experts, rows, groups, suffix == std::string_view("_blocks") ? ", 16" : "");
      }
    }
    if (t.bias->shape != std::vector<int64_t>{experts, rows}) {
      fail("tensor '{}_bias' in {}: shape {} but config.json implies [{}, {}]", name, store_.describe(),
           t.bias->shape_string(), experts, rows);
    }
    if (t.bias->dtype != DType::F32 && t.bias->dtype != DType::BF16 && t.bias->dtype != DType::F16) {
      fail("tensor '{}_bias' in {}: dtype {} is not supported (supported: F32, F16, BF16)", name, store_.describe(),
           dtype_name(t.bias->dtype));
    }
    if (t.blocks->data == nullptr || t.scales->data == nullptr || t.bias->data == nullptr)
      fail("tensor '{}_blocks' in {}: its file is not mapped", name, store_.describe());
    return t;
  }

  // Expert `e` of a stacked projection: its matrix, checked scales, and bias.
  Weight stacked_matrix(const Stacked& t, int e, std::vector<float>& bias) {
    const int groups = t.cols / kMxfp4Block;
    const size_t block_bytes = static_cast<size_t>(t.rows) * t.cols / 2,
                 scale_bytes = static_cast<size_t>(t.rows) * groups;
    const std::byte* blocks = t.blocks->data + static_cast<size_t>(e) * block_bytes;
    const std::byte* scales = t.scales->data + static_cast<size_t>(e) * scale_bytes;
    // e8m0 has no infinities: 255 is NaN. Scales near the top of the range
    // would overflow float32 with the larger e2m1 values; both are refused.
    const Weight w{DType::MXFP4, t.rows, t.cols, blocks, scales};
    for (int r = 0; r < t.rows; ++r) {
      for (int g = 0; g < groups; ++g) {
        const auto byte = static_cast<uint8_t>(scales[static_cast<size_t>(r) * groups + g]);
        if (byte == kE8m0Nan) {
          fail("tensor '{}_scales' in {}: scale byte 255 (NaN in e8m0) at [{}, {}, {}]", t.name, store_.describe(), e,
               r, g);
        }
        if (byte < 253) continue;
        std::vector<float> row(static_cast<size_t>(t.cols));
        widen_row(w, r, row.data());
        for (int k = g * kMxfp4Block; k < (g + 1) * kMxfp4Block; ++k) {
          if (!std::isfinite(row[static_cast<size_t>(k)])) {
            fail("tensor '{}_scales' in {}: scale byte {} at [{}, {}, {}] makes a weight overflow float32", t.name,
                 store_.describe(), byte, e, r, g);
          }
        }
      }
    }
    Weight b{t.bias->dtype, 1, t.rows, t.bias->data + static_cast<size_t>(e) * t.rows * dtype_size(t.bias->dtype)};
    bias = widen_all(b);
    for (size_t i = 0; i < bias.size(); ++i) {
      if (!std::isfinite(bias[i]))
        fail("tensor '{}_bias' in {}: element [{}, {}] is {}; biases must be finite", t.name, store_.describe(), e, i,
             bias[i]);
    }
    out_.file_bytes += block_bytes + scale_bytes + static_cast<size_t>(t.rows) * dtype_size(t.bias->dtype);
    Weight out = w;
    if (memory_ == WeightMemory::Copy) {
      out.data = copy(blocks, block_bytes);
      out.scales = copy(scales, scale_bytes);
    }
    other_.push_back(out);
    return out;
  }

  FfnWeights ffn(int layer, const std::string& prefix, int hidden, int width) {
    FfnWeights f;
    f.gate = matrix(Names::layer(layer, fmt::format("{}.{}.weight", prefix, names_.gate)), width, hidden);
    f.up = matrix(Names::layer(layer, fmt::format("{}.{}.weight", prefix, names_.up)), width, hidden);
    f.down = matrix(Names::layer(layer, fmt::format("{}.{}.weight", prefix, names_.down)), hidden, width);
    return f;
  }

 private:
  // The bytes of one matrix in memory of this process's own, 64-byte
  // aligned; large ones on 2 MB boundaries with huge pages asked for. The
  // file's pages are then let go of (they stay in the page cache).
  const std::byte* copy(const std::byte* data, size_t bytes) {
    constexpr size_t kHuge = size_t{2} << 20;
    const size_t align = bytes >= kHuge ? kHuge : 64;
    const size_t size = (bytes + align - 1) / align * align;
    std::shared_ptr<std::byte> memory(static_cast<std::byte*>(std::aligned_alloc(align, std::max(size, align))),
                                      std::free);
    if (!memory)
      fail("cannot allocate {} bytes to copy weights into (--weights copy); --weights map needs none", bytes);
    if (align == kHuge) ::madvise(memory.get(), size, MADV_HUGEPAGE);
    std::memcpy(memory.get(), data, bytes);
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
    const auto end = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
    if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
    out_.copies.push_back(memory);
    out_.copied_bytes += bytes;
    return memory.get();
  }

  const TensorView& checked(const std::string& name) const {
    const TensorView& t = store_.get(name);
    if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16 && t.dtype != DType::F8_E4M3) {
      fail("tensor '{}' in {}: dtype {} is not supported (supported: F32, F16, BF16, and F8_E4M3 with block scales)",
           name, store_.describe(), dtype_name(t.dtype));
    }
    if (t.data == nullptr) fail("tensor '{}' in {}: its file is not mapped", name, store_.describe());
    out_.file_bytes += t.nbytes;
    return t;
  }

  const WeightStore& store_;
  const ModelConfig& config_;
  const TensorNames& names_;
  std::vector<std::pair<std::string, Weight>> fp8_;
  std::vector<Weight> other_;  // the matrices that are not FP8
  WeightMemory memory_;
  ModelWeights& out_;  // holds the copies
};

// "x.weight" -> "x.bias": the bias of a Linear layer.
std::string bias_name(const std::string& weight) {
  return weight.substr(0, weight.size() - std::string_view(".weight").size()) + ".bias";
}

// Decoder layer of a "model.layers.N...." name, or -1.
int layer_of(std::string_view name) {
  const std::string_view prefix = Names::kLayerPrefix;
  if (!name.starts_with(prefix)) return -1;
  int index = 0;
  const auto [end, ec] = std::from_chars(name.data() + prefix.size(), name.data() + name.size(), index);
  if (ec != std::errc() || end == name.data() + name.size() || *end != '.') return -1;
  return index;
}

}  // namespace

std::vector<TensorSpec> expected_tensors(const ModelConfig& c) {
  const TensorNames& n = family_of(c).names;
  std::vector<TensorSpec> out;
  const int64_t hidden = c.hidden_size;
  const int64_t heads = c.num_attention_heads;
  // Projections inside decoder layers are FP8 in DeepSeek's FP8 checkpoints;
  // embeddings, lm_head, norms and the router stay as they are.
  TensorPart part = TensorPart::Embeddings;
  int moe_layer = -1, expert = -1;
  const auto add = [&](TensorSpec spec) {
    spec.part = part;
    spec.moe_layer = moe_layer;
    spec.expert = expert;
    out.push_back(std::move(spec));
  };
  const auto matrix = [&](std::string name, int64_t rows, int64_t cols, bool quantizable = true) {
    add({.name = std::move(name), .shape = {rows, cols}, .quantizable = quantizable});
  };
  const auto norm = [&](std::string name, int64_t size) {
    add({.name = std::move(name), .shape = {size}, .is_norm = true});
  };
  const auto ffn = [&](int l, const std::string& prefix, int64_t width) {
    matrix(Names::layer(l, fmt::format("{}.{}.weight", prefix, n.gate)), width, hidden);
    matrix(Names::layer(l, fmt::format("{}.{}.weight", prefix, n.up)), width, hidden);
    matrix(Names::layer(l, fmt::format("{}.{}.weight", prefix, n.down)), hidden, width);
  };
  matrix(n.embed, c.vocab_size, hidden, false);
  int moe_index = 0;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    part = TensorPart::RouterAndNorms;
    norm(Names::layer(l, n.input_norm), hidden);
    norm(Names::layer(l, n.post_attention_norm), hidden);
    part = TensorPart::Attention;
    if (c.attention == AttentionKind::Mla) {
      const int64_t q_out = heads * c.qk_head_dim();
      if (c.q_lora_rank > 0) {
        matrix(Names::layer(l, n.q_a), c.q_lora_rank, hidden);
        norm(Names::layer(l, n.q_a_norm), c.q_lora_rank);
        matrix(Names::layer(l, n.q_b), q_out, c.q_lora_rank);
      } else {
        matrix(Names::layer(l, n.q), q_out, hidden);
      }
      matrix(Names::layer(l, n.kv_a), c.kv_lora_rank + c.qk_rope_head_dim, hidden);
      norm(Names::layer(l, n.kv_a_norm), c.kv_lora_rank);
      matrix(Names::layer(l, n.kv_b), heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
      matrix(Names::layer(l, n.o), hidden, heads * c.v_head_dim);
    } else {
      const int64_t q_width = heads * c.head_dim, kv_width = static_cast<int64_t>(c.num_key_value_heads) * c.head_dim;
      matrix(Names::layer(l, n.q), q_width, hidden);
      matrix(Names::layer(l, n.k), kv_width, hidden);
      matrix(Names::layer(l, n.v), kv_width, hidden);
      matrix(Names::layer(l, n.o), hidden, q_width);
      if (c.attention_bias) {
        add({.name = bias_name(Names::layer(l, n.q)), .shape = {q_width}});
        add({.name = bias_name(Names::layer(l, n.k)), .shape = {kv_width}});
        add({.name = bias_name(Names::layer(l, n.v)), .shape = {kv_width}});
        add({.name = bias_name(Names::layer(l, n.o)), .shape = {hidden}});
      }
      if (c.attention_sinks) add({.name = Names::layer(l, n.sinks), .shape = {heads}});
      if (c.qk_norm == QkNorm::PerHead) {
        norm(Names::layer(l, n.q_norm), c.head_dim);
        norm(Names::layer(l, n.k_norm), c.head_dim);
      } else if (c.qk_norm == QkNorm::Whole) {
        norm(Names::layer(l, n.q_norm), q_width);
        norm(Names::layer(l, n.k_norm), kv_width);
      }
    }
    if (!c.is_moe_layer(l)) {
      part = TensorPart::Dense;
      ffn(l, n.dense, c.intermediate_size);
      continue;
    }
    part = TensorPart::RouterAndNorms;
    matrix(Names::layer(l, n.router), c.n_routed_experts, hidden, false);
    if (c.router_bias) add({.name = Names::layer(l, n.router_bias), .shape = {c.n_routed_experts}, .is_bias = true});
    if (c.router_logit_bias) add({.name = Names::layer(l, n.router_bias), .shape = {c.n_routed_experts}});
    part = TensorPart::Shared;
    if (c.n_shared_experts > 0) ffn(l, n.shared, static_cast<int64_t>(c.moe_intermediate_size) * c.n_shared_experts);
    part = TensorPart::Routed;
    moe_layer = moe_index++;
    if (c.experts_stacked) {
      const int64_t experts = c.n_routed_experts, width = c.moe_intermediate_size;
      for (const auto& [proj, rows, cols] :
           {std::tuple{n.gate, 2 * width, hidden}, std::tuple{n.down, hidden, width}}) {
        const std::string base = Names::layer(l, fmt::format("{}.{}", n.experts, proj));
        const int64_t groups = cols / kMxfp4Block;
        add({.name = base + "_blocks",
             .shape = {experts, rows, groups, kMxfp4Block / 2},
             .packed = TensorSpec::Packed::Blocks});
        add({.name = base + "_scales", .shape = {experts, rows, groups}, .packed = TensorSpec::Packed::Scales});
        add({.name = base + "_bias", .shape = {experts, rows}});
      }
    } else {
      for (expert = 0; expert < c.n_routed_experts; ++expert) ffn(l, Names::expert(n, expert), c.moe_intermediate_size);
    }
    moe_layer = expert = -1;
  }
  part = TensorPart::RouterAndNorms;
  norm(n.final_norm, hidden);
  part = TensorPart::Embeddings;
  if (!c.tie_word_embeddings) matrix(n.lm_head, c.vocab_size, hidden, false);
  return out;
}

WeightMemory parse_weight_memory(const std::string& name) {
  if (name == "map") return WeightMemory::Map;
  if (name == "copy") return WeightMemory::Copy;
  fail("--weights '{}' is not one of map, copy", name);
}

const char* weight_memory_name(WeightMemory memory) { return memory == WeightMemory::Copy ? "copy" : "map"; }

ModelWeights load_model_weights(const WeightStore& store, const ModelConfig& c, const ExpertFilter& load_expert,
                                bool shared_parts, WeightMemory memory) {
  ModelWeights w;
  Loader load(store, c, memory, w);
  const TensorNames& n = family_of(c).names;
  const int hidden = c.hidden_size;
  const int heads = c.num_attention_heads;

  // Layers beyond the config's count (other than DeepSeek's multi-token
  // prediction layers) mean config.json and the weights disagree.
  for (const auto& [name, view] : store.all()) {
    const int index = layer_of(name);
    if (index >= c.num_hidden_layers + c.num_nextn_predict_layers) {
      fail("tensor '{}' in {} belongs to layer {} but config.json has num_hidden_layers {}", name, store.describe(),
           index, c.num_hidden_layers);
    }
  }

  // The routed experts of decoder layer l (MoE layer m) this rank holds.
  const auto load_routed_experts = [&](LayerWeights& lw, int l, int m) {
    lw.experts.resize(static_cast<size_t>(c.n_routed_experts));
    if (c.experts_stacked) {
      const int width = c.moe_intermediate_size;
      std::optional<Loader::Stacked> gate_up, down;
      for (int e = 0; e < c.n_routed_experts; ++e) {
        if (!load_expert(m, e)) continue;
        if (!gate_up) {
          gate_up = load.stacked(Names::layer(l, fmt::format("{}.{}", n.experts, n.gate)), c.n_routed_experts,
                                 2 * width, hidden);
          down =
              load.stacked(Names::layer(l, fmt::format("{}.{}", n.experts, n.down)), c.n_routed_experts, hidden, width);
        }
        FfnWeights& f = lw.experts[static_cast<size_t>(e)];
        f.gate_up = load.stacked_matrix(*gate_up, e, f.gate_up_bias);
        f.down = load.stacked_matrix(*down, e, f.down_bias);
        f.swiglu_limit = c.swiglu_limit;
        f.swiglu_alpha = c.swiglu_alpha;
      }
      return;
    }
    for (int e = 0; e < c.n_routed_experts; ++e) {
      if (load_expert(m, e)) lw.experts[e] = load.ffn(l, Names::expert(n, e), hidden, c.moe_intermediate_size);
    }
  };
  int moe_index = 0;
  if (!shared_parts) {
    // An expert shard holds its routed experts and nothing else.
    for (int l = 0; l < c.num_hidden_layers; ++l) {
      LayerWeights lw;
      lw.is_moe = c.is_moe_layer(l);
      if (lw.is_moe) {
        load_routed_experts(lw, l, moe_index++);
      }
      w.layers.push_back(std::move(lw));
    }
    load.check_fp8_values();
    load.fault_in();
    return w;
  }
  w.embed = load.matrix(n.embed, c.vocab_size, hidden);
  w.final_norm = load.vector(n.final_norm, hidden);
  if (c.tie_word_embeddings && store.find(n.lm_head) == nullptr) {
    w.lm_head = w.embed;
  } else {
    w.lm_head = load.matrix(n.lm_head, c.vocab_size, hidden);
  }

  for (int l = 0; l < c.num_hidden_layers; ++l) {
    stop_point("loading the model");
    LayerWeights lw;
    lw.input_norm = load.vector(Names::layer(l, n.input_norm), hidden);
    lw.post_attention_norm = load.vector(Names::layer(l, n.post_attention_norm), hidden);

    AttentionWeights& a = lw.attention;
    if (c.attention == AttentionKind::Mla) {
      const int q_out = heads * c.qk_head_dim();
      if (c.q_lora_rank > 0) {
        a.q_a = load.matrix(Names::layer(l, n.q_a), c.q_lora_rank, hidden);
        a.q_a_norm = load.vector(Names::layer(l, n.q_a_norm), c.q_lora_rank);
        a.q_b = load.matrix(Names::layer(l, n.q_b), q_out, c.q_lora_rank);
      } else {
        a.q = load.matrix(Names::layer(l, n.q), q_out, hidden);
      }
      a.kv_a = load.matrix(Names::layer(l, n.kv_a), c.kv_lora_rank + c.qk_rope_head_dim, hidden);
      a.kv_a_norm = load.vector(Names::layer(l, n.kv_a_norm), c.kv_lora_rank);
      a.kv_b = load.matrix(Names::layer(l, n.kv_b), heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
      a.o = load.matrix(Names::layer(l, n.o), hidden, heads * c.v_head_dim);
    } else {
      const int q_width = heads * c.head_dim, kv_width = c.num_key_value_heads * c.head_dim;
      a.q = load.matrix(Names::layer(l, n.q), q_width, hidden);
      a.k = load.matrix(Names::layer(l, n.k), kv_width, hidden);
      a.v = load.matrix(Names::layer(l, n.v), kv_width, hidden);
      a.o = load.matrix(Names::layer(l, n.o), hidden, q_width);
      if (c.attention_bias) {
        a.q_bias = load.vector(bias_name(Names::layer(l, n.q)), q_width);
        a.k_bias = load.vector(bias_name(Names::layer(l, n.k)), kv_width);
        a.v_bias = load.vector(bias_name(Names::layer(l, n.v)), kv_width);
        a.o_bias = load.vector(bias_name(Names::layer(l, n.o)), hidden);
      }
      if (c.attention_sinks) a.sinks = load.vector(Names::layer(l, n.sinks), heads);
      if (c.qk_norm != QkNorm::None) {
        const bool per_head = c.qk_norm == QkNorm::PerHead;
        a.q_norm = load.vector(Names::layer(l, n.q_norm), per_head ? c.head_dim : q_width);
        a.k_norm = load.vector(Names::layer(l, n.k_norm), per_head ? c.head_dim : kv_width);
      }
    }

    lw.is_moe = c.is_moe_layer(l);
    if (!lw.is_moe) {
      lw.dense = load.ffn(l, n.dense, hidden, c.intermediate_size);
    } else {
      lw.router.gate = load.router_matrix(Names::layer(l, n.router), c.n_routed_experts, hidden);
      if (c.router_bias) lw.router.bias = load.vector(Names::layer(l, n.router_bias), c.n_routed_experts);
      if (c.router_logit_bias) lw.router.logit_bias = load.vector(Names::layer(l, n.router_bias), c.n_routed_experts);
      if (c.n_shared_experts > 0)
        lw.shared = load.ffn(l, n.shared, hidden, c.moe_intermediate_size * c.n_shared_experts);
      load_routed_experts(lw, l, moe_index++);
    }
    w.layers.push_back(std::move(lw));
  }
  load.check_fp8_values();
  load.fault_in();
  return w;
}

bool tensor_used(const ModelConfig& c, const ExpertFilter& load_expert, bool shared_parts, std::string_view name) {
  const int layer = layer_of(name);
  if (layer < 0) return shared_parts;
  if (layer >= c.num_hidden_layers) return false;  // multi-token prediction: never used for generation
  const std::string experts = fmt::format(".{}.", family_of(c).names.experts);
  const size_t at = name.find(experts);
  if (at == std::string_view::npos || !c.is_moe_layer(layer)) return shared_parts;
  if (!load_expert) return true;
  int expert = 0;
  const char* digits = name.data() + at + experts.size();
  const auto [end, ec] = std::from_chars(digits, name.data() + name.size(), expert);
  if (ec != std::errc()) return true;
  const auto moe = c.moe_layers();
  const int moe_layer = static_cast<int>(std::find(moe.begin(), moe.end(), layer) - moe.begin());
  return load_expert(moe_layer, expert);
}

}  // namespace mote
