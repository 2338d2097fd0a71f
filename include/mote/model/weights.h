// The weights of a model of any supported family, as views into the
// memory-mapped safetensors files (or copies of them, WeightMemory::Copy).
// Matrices keep their file dtype; only the small vectors (norm weights,
// router bias) are widened to fp32 at load.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mote/io/safetensors.h"
#include "mote/model/config.h"
#include "mote/ops/weight.h"

namespace mote {

// SwiGLU feed-forward: down(silu(gate(x)) * up(x)); or, for gpt-oss's
// experts, one gate_up product whose even rows are the gate and odd rows
// the up projection, with biases on both products.
struct FfnWeights {
  Weight gate, up, down;
  Weight gate_up;                   // [2 * width, hidden], rows gate, up, gate, up, ...
  std::vector<float> gate_up_bias;  // [2 * width]; empty without biases
  std::vector<float> down_bias;     // [hidden]
  float swiglu_limit = 0.0f;        // > 0: the clamped SwiGLU of ops/elementwise.h
  float swiglu_alpha = 1.0f;
  bool empty() const { return gate.empty() && gate_up.empty(); }
};

struct AttentionWeights {
  Weight q_a;                   // [q_lora_rank, hidden]       (q_lora_rank > 0)
  std::vector<float> q_a_norm;  // [q_lora_rank]
  Weight q_b;                   // [heads*qk_head_dim, q_lora_rank]
  Weight q;                     // MLA: [heads*qk_head_dim, hidden] (q_lora_rank == 0); GQA: [heads*head_dim, hidden]
  Weight k, v;                  // GQA: [kv_heads*head_dim, hidden]
  std::vector<float> q_norm, k_norm;  // GQA q/k RMSNorm: [head_dim] per head, or the whole projection's width
  Weight kv_a;                        // [kv_lora_rank + qk_rope, hidden]
  std::vector<float> kv_a_norm;       // [kv_lora_rank]
  Weight kv_b;                        // [heads*(qk_nope + v), kv_lora_rank]
  Weight o;                           // [hidden, heads*v]
  std::vector<float> q_bias, k_bias, v_bias, o_bias;  // attention_bias
  std::vector<float> sinks;                           // [heads]: attention_sinks
};

struct RouterWeights {
  Weight gate;                    // [n_routed, hidden]
  std::vector<float> bias;        // e_score_correction_bias [n_routed]; empty where the family has none
  std::vector<float> logit_bias;  // the router Linear's own bias (gpt-oss), added to the logits
};

struct LayerWeights {
  std::vector<float> input_norm;
  std::vector<float> post_attention_norm;
  AttentionWeights attention;
  bool is_moe = false;
  FfnWeights dense;                 // dense layers
  RouterWeights router;             // MoE layers
  FfnWeights shared;                // MoE layers with shared experts
  std::vector<FfnWeights> experts;  // MoE layers; empty entries for experts held elsewhere
};

struct ModelWeights {
  Weight embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;
  Weight lm_head;  // [vocab, hidden]
  // With WeightMemory::Copy, the memory the matrices were copied into.
  std::vector<std::shared_ptr<std::byte>> copies;
  uint64_t copied_bytes = 0;
  // Bytes of the weight files behind every tensor loaded (FP8 scales
  // included): what 'mote plan' predicts for the rank.
  uint64_t file_bytes = 0;
};

// Where the matrices a process holds live while it runs. Map: in the
// memory-mapped files (the page cache, shared by the ranks of a node; the
// default). Copy: in the process's own memory, read once at load (huge pages
// where the kernel gives them): on some machines, virtual ones especially,
// mapped file pages that have not been read for a while come back at a
// fraction of the memory's speed. It costs a copy per rank of the parts
// every rank holds.
enum class WeightMemory { Map, Copy };
WeightMemory parse_weight_memory(const std::string& name);
const char* weight_memory_name(WeightMemory memory);

// The part of the model a tensor belongs to: what a rank holds depends on
// it (routed experts where the placement puts them, the rest on every
// coordinator), whatever the family calls the tensor.
enum class TensorPart { Embeddings, Attention, Dense, RouterAndNorms, Shared, Routed };

// Name, shape and expected role of every tensor a config implies, in file
// order (used to write synthetic models, to list what a loader expects and
// to plan each rank's memory).
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  bool is_norm = false;      // 1-D norm weight (ones in synthetic models)
  bool is_bias = false;      // router bias (kept in F32, as DeepSeek ships it)
  bool quantizable = false;  // stored FP8 with block scales in FP8 checkpoints
  // MXFP4 bytes (U8): a stacked projection's _blocks (e2m1 pairs) or _scales (e8m0).
  enum class Packed : uint8_t { No, Blocks, Scales } packed = Packed::No;
  TensorPart part = TensorPart::RouterAndNorms;
  int moe_layer = -1;  // a routed expert's MoE-layer index and expert; expert -1 for a
  int expert = -1;     // tensor of all the layer's experts stacked (an equal slice each)
};
std::vector<TensorSpec> expected_tensors(const ModelConfig& config);

// Which routed experts this process loads, by (MoE-layer index, expert).
using ExpertFilter = std::function<bool(int moe_layer, int expert)>;

// Looks up and checks every tensor the config implies: present, 2-D or 1-D
// with the expected shape, dtype F32/F16/BF16, or F8_E4M3 paired with its
// F32 `<name>_scale_inv` of shape [ceil(rows/128), ceil(cols/128)] (finite
// scales, no NaN bytes). Tensors of layers past the config's layer count
// (and its multi-token-prediction layers) are an error: they mean config
// and weights disagree.
// Without `shared_parts` (an expert shard), only the routed experts are loaded.
ModelWeights load_model_weights(const WeightStore& store, const ModelConfig& config, const ExpertFilter& load_expert,
                                bool shared_parts = true, WeightMemory memory = WeightMemory::Map);

// Whether a job that holds the experts `load_expert` accepts uses tensor
// `name`: false for multi-token-prediction layers and other ranks' experts,
// whose files then need not be mapped.
bool tensor_used(const ModelConfig& config, const ExpertFilter& load_expert, bool shared_parts, std::string_view name);

}  // namespace mote
