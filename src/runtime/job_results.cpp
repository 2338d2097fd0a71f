// Rank 0's side of finished requests: the output file (or checkpoint
// parts), printing in prompt-file order, and the class totals.
#include <spdlog/spdlog.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <iostream>

#include "job_steps.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/io/json_file.h"
#include "mote/results/counters_output.h"
#include "mote/results/mask_output.h"
#include "mote/results/request_output.h"
#include "mote/tokenizer/harmony.h"
#include "mote/util/error.h"
#include "mote/util/hash.h"
#include "mote/util/memory.h"
#include "mote/util/stop_signal.h"
#include "mote/util/utf8.h"

namespace mote {
namespace {

// What `mote generate` echoes of a conversation: its last message's text.
std::string last_message(const nlohmann::ordered_json& chat) {
  const auto& last = chat["messages"].back();
  if (last.contains("content") && last["content"].is_string()) return last["content"].get<std::string>();
  return last.dump();
}

}  // namespace

ResultCollector::ResultCollector(const JobOptions& options, const JobModel& model, const JobRequests& requests,
                                 OutputFile* out, Checkpoint* checkpoint, FinishedRequests finished,
                                 const std::vector<size_t>& todo, bool keep_outcome)
    : options_(options),
      model_(model),
      requests_(requests),
      out_(out),
      checkpoint_(checkpoint),
      // Finished requests go into checkpoint parts when asked for, else
      // straight into the result file (which becomes a part if the job is stopped).
      write_parts_(checkpoint != nullptr && options.checkpoint_every > 0),
      ran_(requests.size(), false),
      class_totals_(static_cast<int>(requests.classes().size()), model.moe_layers(), model.config.n_routed_experts),
      run_totals_(ExpertCounters::pooled_classes(model.moe_layers(), model.config.n_routed_experts)),
      class_tokens_(requests.classes().size() * kPhaseCount, 0),
      keep_outcome_(keep_outcome),
      texts_(keep_outcome ? requests.size() : 0),
      first_tokens_(keep_outcome ? requests.size() : 0, -1),
      scores_(keep_outcome ? requests.size() : 0),
      progress_(todo.size()) {
  if (out_ != nullptr) requests_group_.emplace(h5_create_group(out_->root(), "requests"));
  for (size_t i : todo) ran_[i] = true;
  finished_before_ = finished.size();
  // Requests finished before a resume are not run again; they wait, in
  // order, with the new ones for printing and the totals.
  for (auto& [index, result] : finished) waiting_.emplace(index, std::move(result));
}

void ResultCollector::handed_out(size_t index, PreparedPrompt&& prompt) { prompts_[index] = std::move(prompt); }

const PreparedPrompt& ResultCollector::prompt(size_t index) {
  auto it = prompts_.find(index);
  if (it == prompts_.end()) it = prompts_.emplace(index, requests_.prepare(index)).first;
  return it->second;
}

void ResultCollector::write(hid_t group, size_t index, const GenerationResult& result) {
  const auto& tokenizer = model_.loaded->tokenizer;
  const ExpertMask* mask = requests_.mask(index);
  const std::string mask_name = mask != nullptr ? mask->name : "";
  // A request that never ran stores no tokens (an over-long prompt's would
  // be as large as its text).
  static const std::vector<int32_t> kNoTokens;
  const bool never_ran = requests_.failed(index);
  const PreparedPrompt& p = prompt(index);
  write_request(
      group, RequestRecord{index, p.spec.id, p.spec.cls, mask_name, p.encoded.text, tokenizer.decode(result.generated),
                           result.error.empty() ? requests_.error(index) : result.error,
                           never_ran ? &kNoTokens : &p.encoded.tokens, &result, model_.config.vocab_size,
                           model_.moe_layers(), model_.config.num_experts_per_tok, model_.config.n_routed_experts,
                           static_cast<int>(options_.gen.score_ids.size()), options_.gen.save_last_logits,
                           options_.request_counts, ""});
}

void ResultCollector::operator()(size_t index, GenerationResult&& result) {
  if (index >= requests_.size() || !ran_[index] || waiting_.count(index) > 0 || index < next_to_print_) {
    fail("protocol error: a result for request {}, which is not running", index);
  }
  if (!result.error.empty()) {
    run_errors_[index] = result.error;
    const PromptSpec& spec = prompt(index).spec;
    spdlog::warn("{}:{} (id '{}'): request failed: {}", spec.file.empty() ? "-" : spec.file, spec.line, spec.id,
                 result.error);
  }
  progress_.request_done(result.generated.size());
  ++finished_now_;
  if (write_parts_) {
    write(checkpoint_->requests_group(), index, result);
    checkpoint_->request_written();
  } else if (out_ != nullptr) {
    write(requests_group_->id(), index, result);
  }
  result.logits.clear();  // printing and totals need only the tokens and counts
  result.route_experts.clear();
  result.route_weights.clear();
  waiting_.emplace(index, std::move(result));
  print_ready();
}

void ResultCollector::show(size_t index, const std::string& body) {
  if (stdout_failed_) return;
  const PromptSpec& s = prompt(index).spec;
  // Prompt files and model output can hold terminal escape sequences.
  std::cout << "### " << escape_controls(s.id) << " (" << escape_controls(s.cls) << ")\n"
            << "> " << escape_controls(s.prompt ? *s.prompt : last_message(*s.chat)) << "\n"
            << escape_controls(body) << "\n\n"
            << std::flush;
  if (!std::cout) {
    // The reader went away (SIGPIPE) or the disk behind a redirect is
    // full: stop cleanly, keeping what finished, as for SIGTERM.
    stdout_failed_ = true;
    const int err = errno;
    spdlog::error("standard output: write failed ({}); stopping the job", std::strerror(err));
    request_stop(SIGPIPE);
  }
}

void ResultCollector::print_ready() {
  const auto& tokenizer = model_.loaded->tokenizer;
  for (;;) {
    if (next_to_print_ < requests_.size() && requests_.failed(next_to_print_)) {
      show(next_to_print_, "[request failed: " + requests_.error(next_to_print_) + "]");
      prompts_.erase(next_to_print_);
      ++next_to_print_;
      continue;
    }
    if (waiting_.empty() || waiting_.begin()->first != next_to_print_) return;
    const auto& done = waiting_.begin()->second;
    const size_t cls = static_cast<size_t>(requests_.cls(next_to_print_));
    const size_t per_class = done.expert_counts.size();
    // A request that failed while it ran (non-finite logits or router
    // scores) adds nothing to the class totals: its counts and gate sums
    // describe a broken computation. The ranks processed its tokens all
    // the same, so it stays in the totals checked against their counters.
    const bool succeeded = done.error.empty();
    for (size_t i = 0; i < per_class; ++i) {
      if (succeeded) {
        class_totals_.tokens[cls * per_class + i] += done.expert_counts[i];
        class_totals_.gate_sum[cls * per_class + i] += done.expert_gate_sum[i];
      }
      if (ran_[next_to_print_]) {
        run_totals_.tokens[i] += done.expert_counts[i];
        run_totals_.gate_sum[i] += done.expert_gate_sum[i];
      }
    }
    if (succeeded) {
      class_tokens_[cls * kPhaseCount + kPromptPhase] += static_cast<uint64_t>(done.prompt_positions);
      class_tokens_[cls * kPhaseCount + kGeneratedPhase] += static_cast<uint64_t>(done.generated_positions);
    }
    std::vector<int32_t> shown = done.generated;
    if (done.stop == StopReason::Eos) shown.pop_back();
    std::string text = tokenizer.decode(shown);
    // A harmony reply (gpt-oss) shows its final channel; the output file
    // keeps the whole reply, analysis included.
    const std::optional<std::string> final_text = harmony_final_text(tokenizer, shown);
    show(next_to_print_, !done.error.empty() ? "[request failed: " + done.error + "]"
                         : final_text        ? *final_text
                                             : text);
    if (keep_outcome_) {
      texts_[next_to_print_] = std::move(text);
      if (!done.generated.empty()) first_tokens_[next_to_print_] = done.generated.front();
      scores_[next_to_print_] = done.scores;
    }
    prompts_.erase(next_to_print_);
    waiting_.erase(waiting_.begin());
    ++next_to_print_;
  }
}

bool ResultCollector::save_checkpoint() {
  progress_.finish();
  // Without per-request counts a checkpoint could not give the class totals back.
  if (checkpoint_ == nullptr || !options_.request_counts) return false;
  if (write_parts_) {
    checkpoint_->flush();
  } else if (finished_now_ > 0) {
    requests_group_->reset();
    checkpoint_->adopt(*out_);
  }
  return true;
}

std::vector<uint64_t> gather_rank_memory(const JobModel& model, int world_size) {
  // Peak RSS and the resident part of the weight files (falls as 1/N for
  // expert weights), plus the copies (--weights copy).
  std::vector<uint64_t> all(2 * static_cast<size_t>(world_size));
  const uint64_t mine[2] = {peak_rss_bytes(),
                            mapped_rss_bytes(model.loaded->store.paths()) + model.loaded->weights.copied_bytes};
  MPI_Gather(mine, 2, MPI_UINT64_T, all.data(), 2, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  return all;
}

void log_rank_memory(const std::vector<uint64_t>& rank_memory) {
  std::string line;
  for (size_t r = 0; r < rank_memory.size() / 2; ++r) {
    line +=
        fmt::format("{}rank {}: {:.1f} MB peak, {:.1f} MB of weights resident", r ? "; " : "", r,
                    static_cast<double>(rank_memory[2 * r]) / 1e6, static_cast<double>(rank_memory[2 * r + 1]) / 1e6);
  }
  spdlog::info("memory: {}", line);
}

void write_ranks(hid_t root, const Placement& placement, const std::vector<uint64_t>& rank_memory) {
  const size_t world = rank_memory.size() / 2;
  std::vector<uint64_t> peak_rss, weights_resident;
  std::vector<int32_t> experts;
  for (size_t r = 0; r < world; ++r) {
    peak_rss.push_back(rank_memory[2 * r]);
    weights_resident.push_back(rank_memory[2 * r + 1]);
    experts.push_back(placement.count_on(static_cast<int>(r)));
  }
  H5Handle ranks = h5_create_group(root, "ranks");
  h5_dataset(ranks.id(), "peak_rss_bytes", {world}, peak_rss.data());
  h5_dataset(ranks.id(), "weights_resident_bytes", {world}, weights_resident.data());
  h5_dataset(ranks.id(), "routed_experts", {world}, experts.data());
}

void write_totals(hid_t root, const ExpertCounters& counters, const std::vector<std::string>& classes,
                  const std::vector<uint64_t>& class_tokens, const ModelConfig& config) {
  write_counters(root, counters, classes, config.moe_layers());
  h5_dataset(root, "tokens", {static_cast<hsize_t>(classes.size()), kPhaseCount}, class_tokens.data());
  h5_axes(root, "tokens", "class,phase");
  h5_attr_string(
      root, "axes_note",
      "a moe_layer axis counts MoE layers only, in order (0 = the first MoE layer); /moe_layer_decoder_index gives "
      "each one's decoder-layer index; class and phase axes follow /classes and /phases");
}

void order_requests(hid_t root, size_t count, const std::string& where) {
  // Requests finish in any order and parts are copied by name; the result
  // lists them in index order (a group that tracks creation order, links
  // moved in index order).
  if (H5Lmove(root, "requests", root, "requests_unordered", H5P_DEFAULT, H5P_DEFAULT) < 0) {
    fail("{}: cannot reorder /requests", where);
  }
  {
    H5Handle ordered = h5_create_ordered_group(root, "requests");
    H5Handle unordered(H5Gopen2(root, "requests_unordered", H5P_DEFAULT), H5Gclose);
    for (size_t i = 0; i < count; ++i) {
      const std::string name = std::to_string(i);
      if (H5Lmove(unordered.id(), name.c_str(), ordered.id(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT) < 0) {
        fail("{}: cannot move request {} into /requests", where, i);
      }
    }
  }
  H5Ldelete(root, "requests_unordered", H5P_DEFAULT);
}

void write_job_attributes(hid_t root, const JobOptions& options, const ModelConfig& config, const Placement& placement,
                          int world_size, const char* job) {
  const auto& gen = options.gen;
  h5_attr_string(root, "format", "mote");
  h5_attr_int(root, "format_version", 1);
  h5_attr_string(root, "job", job);
  h5_attr_string(root, "mote_version", MOTE_VERSION);
  h5_attr_string(root, "command_line", options.command_line);
  h5_attr_string(root, "model", options.model_dir);
  h5_attr_string(root, "model_type", config.model_type);
  h5_attr_string(root, "model_config_fnv1a",
                 fmt::format("{:016x}", fnv1a(kFnv1aBasis, read_text_file(std::filesystem::path(options.model_dir) /
                                                                          "config.json"))));
  h5_attr_int(root, "world_size", world_size);
  h5_attr_int(root, "coordinators", options.coordinators);
  h5_attr_string(root, "placement", placement.name());
  h5_attr_string(root, "placement_table", placement.table());
  h5_attr_string(root, "wire_dtype", options.wire_dtype);
  h5_attr_int(root, "seed", static_cast<int64_t>(gen.seed));
  h5_attr_double(root, "temperature", gen.sampling.temperature);
  h5_attr_double(root, "top_p", gen.sampling.top_p);
  h5_attr_int(root, "max_new_tokens", gen.max_new_tokens);
  h5_attr_int(root, "stop_at_eos", gen.stop_at_eos ? 1 : 0);
}

void ResultCollector::write_result(const MpiSession& mpi, const MaskSets& masks,
                                   const std::vector<uint64_t>& rank_memory, const JobFinish& finish) {
  progress_.finish();
  print_ready();  // requests all finished before a resume print here
  const ModelConfig& config = model_.config;
  const Placement& placement = *model_.placement;
  log_rank_memory(rank_memory);
  size_t failed = run_errors_.size();
  for (size_t i = 0; i < requests_.size(); ++i) failed += requests_.failed(i);
  if (failed > 0) {
    spdlog::warn("{} of {} requests failed (see the warnings above{})", failed, requests_.size(),
                 out_ != nullptr ? ", and the 'error' attribute in /requests" : "");
  }

  if (finish) {
    std::vector<std::string> errors(requests_.size());
    for (size_t i = 0; i < requests_.size(); ++i) errors[i] = requests_.error(i);
    for (const auto& [i, error] : run_errors_) errors[i] = error;
    finish(out_ != nullptr ? out_->root() : -1,
           JobOutcome{texts_, errors, first_tokens_, scores_, model_.loaded->tokenizer});
  }
  if (out_ == nullptr) return;
  OutputFile& out = *out_;
  if (write_parts_) checkpoint_->flush();
  if (checkpoint_->parts() > 0) {
    // The result holds the parts' requests plus class totals and masks.
    out.ensure_room(checkpoint_->bytes() + checkpoint_->bytes() / 8 + (1u << 20));
    checkpoint_->copy_into(requests_group_->id());
  }
  GenerationResult none;
  none.stop = StopReason::Error;
  none.expert_counts.assign(static_cast<size_t>(kPhaseCount) * model_.moe_layers() * config.n_routed_experts, 0);
  none.expert_gate_sum.assign(none.expert_counts.size(), 0.0);
  for (size_t i = 0; i < requests_.size(); ++i) {
    if (requests_.failed(i)) {
      write(requests_group_->id(), i, none);
      prompts_.erase(i);
    }
  }
  // Complete or not at all: every request of the job has its group.
  H5G_info_t info{};
  if (H5Gget_info(requests_group_->id(), &info) < 0 || info.nlinks != requests_.size()) {
    fail("{}: the result holds {} of the job's {} requests; it is not moved into place (the checkpoint is kept)",
         options_.out, info.nlinks, requests_.size());
  }
  requests_group_->reset();
  order_requests(out.root(), requests_.size(), options_.out);
  const hid_t root = out.root();
  write_job_attributes(root, options_, config, placement, mpi.size(), options_.profile ? "profile" : "generate");
  h5_attr_int(root, "request_count", static_cast<int64_t>(requests_.size()));
  h5_attr_string(root, "job_fingerprint", options_.fingerprint);
  h5_attr_int(root, "failed_request_count", static_cast<int64_t>(failed));
  h5_attr_int(root, "request_counts", options_.request_counts ? 1 : 0);
  write_totals(root, class_totals_, requests_.classes(), class_tokens_, config);
  write_masks(root, masks.sets);
  if (!options_.gen.score_ids.empty()) {
    h5_dataset(root, "score_ids", {options_.gen.score_ids.size()}, options_.gen.score_ids.data());
    h5_attr_string(root, "score_tokens", options_.score_tokens);
  }
  write_ranks(root, placement, rank_memory);
  out.commit();
  checkpoint_->remove();
  spdlog::info("wrote {}", options_.out);
}

}  // namespace mote
