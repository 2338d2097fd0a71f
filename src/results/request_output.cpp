#include "mote/results/request_output.h"

#include <string>

#include "mote/io/h5.h"

namespace mote {

void write_request(hid_t requests_group, const RequestRecord& r) {
  const GenerationResult& res = *r.result;
  H5Handle g = h5_create_group(requests_group, std::to_string(r.index));
  h5_attr_string(g.id(), "id", r.id);
  h5_attr_string(g.id(), "class", r.cls);
  h5_attr_string(g.id(), "mask", r.mask);
  if (!r.mask_ini.empty()) h5_attr_string(g.id(), "mask_ini", r.mask_ini);
  h5_attr_string(g.id(), "stop_reason", stop_reason_name(res.stop));
  h5_attr_int(g.id(), "stop_code",
              static_cast<int64_t>(res.stop));  // the same, fixed-size for readers of untrusted files
  if (!r.error.empty()) h5_attr_string(g.id(), "error", r.error);
  // A request that never ran keeps only the head of its prompt (a failed
  // 50 MB line would otherwise be stored whole) and the prompt's length.
  constexpr size_t kFailedPromptHead = 4096;
  if (!r.error.empty() && res.positions == 0 && r.prompt_text.size() > kFailedPromptHead) {
    size_t head = kFailedPromptHead;
    while (head > 0 && (static_cast<unsigned char>(r.prompt_text[head]) & 0xC0) == 0x80) --head;  // a whole character
    h5_string_dataset(g.id(), "prompt_text", r.prompt_text.substr(0, head));
    h5_attr_int(g.id(), "prompt_bytes", static_cast<int64_t>(r.prompt_text.size()));
  } else {
    h5_string_dataset(g.id(), "prompt_text", r.prompt_text);
  }
  h5_string_dataset(g.id(), "text", r.text);
  h5_dataset(g.id(), "prompt_tokens", {r.prompt_tokens->size()}, r.prompt_tokens->data());
  h5_dataset(g.id(), "generated_tokens", {res.generated.size()}, res.generated.data());
  const auto positions = static_cast<hsize_t>(res.positions);
  if (!res.logits.empty()) {
    const hsize_t rows = res.logits.size() / static_cast<size_t>(r.vocab);
    h5_dataset(g.id(), "logits", {rows, static_cast<hsize_t>(r.vocab)}, res.logits.data(), true);
    h5_axes(g.id(), "logits", r.last_logits_only ? "last_prompt_position,vocab" : "position,vocab");
  }
  if (!res.scores.empty() && r.score_width > 0) {
    // Log-probabilities of the file's /score_ids after each scored position.
    h5_dataset(g.id(), "scores",
               {res.scores.size() / static_cast<hsize_t>(r.score_width), static_cast<hsize_t>(r.score_width)},
               res.scores.data());
    h5_axes(g.id(), "scores", "scored_position,score_id");
  }
  if (r.counts && !res.expert_counts.empty()) {
    const std::vector<hsize_t> dims{2, static_cast<hsize_t>(r.moe_layers), static_cast<hsize_t>(r.experts)};
    h5_dataset(g.id(), "expert_counts", dims, res.expert_counts.data(), true);
    h5_dataset(g.id(), "expert_gate_sum", dims, res.expert_gate_sum.data(), true);
    h5_axes(g.id(), "expert_counts", "phase,moe_layer,expert");
    h5_axes(g.id(), "expert_gate_sum", "phase,moe_layer,expert");
  }
  if (!res.route_experts.empty()) {
    H5Handle routing = h5_create_group(g.id(), "routing");
    const std::vector<hsize_t> dims{positions, static_cast<hsize_t>(r.moe_layers), static_cast<hsize_t>(r.top_k)};
    h5_dataset(routing.id(), "experts", dims, res.route_experts.data(), true);
    h5_dataset(routing.id(), "weights", dims, res.route_weights.data(), true);
    h5_axes(routing.id(), "experts", "position,moe_layer,top_k_slot");
    h5_axes(routing.id(), "weights", "position,moe_layer,top_k_slot");
  }
}

}  // namespace mote
