#include "serve_record.h"

#include <spdlog/spdlog.h>

#include "mote/results/counters_output.h"
#include "mote/results/mask_output.h"
#include "mote/results/request_output.h"
#include "mote/util/error.h"
#include "mote/util/hash.h"

namespace mote {
namespace {

constexpr int kPartRequests = 64;
constexpr auto kPartSeconds = std::chrono::seconds(2);
const std::vector<std::string> kClasses = {"default"};

}  // namespace

ServeRecord::ServeRecord(const JobOptions& options) : options_(options) {
  out_.emplace(options.out);
  const std::filesystem::path dir = options_.out + ".checkpoint";
  std::error_code ec;
  if (!options_.resume && std::filesystem::exists(dir, ec)) {
    fail(
        "{} holds the record of a server that did not shut down: continue it with --resume, or move it away (or "
        "write another --record)",
        dir.string());
  }
}

ServeRecord::~ServeRecord() {
  stop_flusher();
  // Stopped by an error: the parts written so far stay for --resume.
  if (checkpoint_) {
    try {
      checkpoint_->flush();
    } catch (const std::exception& e) {
      spdlog::error("{}", e.what());
    }
  }
}

void ServeRecord::start(const JobModel& model, const MaskSets& masks) {
  model_ = &model;
  const int layers = model.moe_layers(), experts = model.config.n_routed_experts;
  totals_ = ExpertCounters(1, layers, experts);
  run_totals_ = ExpertCounters::pooled_classes(layers, experts);
  tokens_.assign(kPhaseCount, 0);
  // What makes two servers' requests one record: the model and the mask
  // sets (each request carries its own sampling settings).
  uint64_t h = fnv1a(kFnv1aBasis, "serve");
  for (const auto& m : masks.sets) h = fnv1a(fnv1a(h, m.name), m.description);
  h = fnv1a(h, fmt::format("{}|{}", std::filesystem::absolute(options_.model_dir).string(), options_.wire_dtype));
  h = fnv1a(h, model_fingerprint(options_.model_dir, model.loaded->store));
  fingerprint_ = fmt::format("{:016x}", h);
  const std::filesystem::path dir = options_.out + ".checkpoint";
  checkpoint_.emplace(dir, fingerprint_ + "\n", kPartRequests);
  if (options_.resume) {
    // The earlier requests, back in the totals in index order.
    const FinishedRequests earlier = checkpoint_->load();
    for (const auto& [index, result] : earlier) {
      if (index != count_) fail("{}: request {} is missing from the record", dir.string(), count_);
      ++count_;
      if (!result.error.empty()) {
        ++failed_;
        continue;
      }
      if (result.expert_counts.size() != totals_.tokens.size())
        fail("{}: request {} has counts of another shape", dir.string(), index);
      for (size_t i = 0; i < totals_.tokens.size(); ++i) {
        totals_.tokens[i] += result.expert_counts[i];
        totals_.gate_sum[i] += result.expert_gate_sum[i];
      }
      tokens_[kPromptPhase] += static_cast<uint64_t>(result.prompt_positions);
      tokens_[kGeneratedPhase] += static_cast<uint64_t>(result.generated_positions);
    }
    spdlog::info("--record {}: continuing after the {} requests of {} parts in {}", options_.out, count_,
                 checkpoint_->parts(), dir.string());
  }
  flusher_ = std::thread([this] { flush_when_due(); });
}

void ServeRecord::add(const ServedRequest& request, const GenerationResult& result) {
  if (result.stop == StopReason::Cancelled && result.expert_counts.empty()) return;  // never ran
  std::lock_guard lock(mutex_);
  const ModelConfig& config = model_->config;
  write_request(checkpoint_->requests_group(),
                RequestRecord{count_, request.id, kClasses[0], request.mask, request.prompt_text,
                              model_->loaded->tokenizer.decode(result.generated), result.error, &request.prompt,
                              &result, config.vocab_size, model_->moe_layers(), config.num_experts_per_tok,
                              config.n_routed_experts, 0, false, true, request.mask_ini});
  ++count_;
  checkpoint_->request_written();  // closes the part after kPartRequests
  // Every request's routing is in the ranks' counters; a failed one's
  // describes a broken computation and stays out of the profile's totals.
  for (size_t i = 0; i < result.expert_counts.size() && i < run_totals_.tokens.size(); ++i) {
    run_totals_.tokens[i] += result.expert_counts[i];
    run_totals_.gate_sum[i] += result.expert_gate_sum[i];
  }
  if (!result.error.empty()) {
    ++failed_;
    return;
  }
  for (size_t i = 0; i < result.expert_counts.size() && i < totals_.tokens.size(); ++i) {
    totals_.tokens[i] += result.expert_counts[i];
    totals_.gate_sum[i] += result.expert_gate_sum[i];
  }
  tokens_[kPromptPhase] += static_cast<uint64_t>(result.prompt_positions);
  tokens_[kGeneratedPhase] += static_cast<uint64_t>(result.generated_positions);
}

void ServeRecord::flush_when_due() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, std::chrono::milliseconds(500));
    if (checkpoint_->open_requests() > 0 && std::chrono::steady_clock::now() - checkpoint_->opened() >= kPartSeconds) {
      try {
        checkpoint_->flush();
      } catch (const std::exception& e) {
        // The disk is full or gone: the next flush (or shutdown) tries again and fails loudly.
        spdlog::error("--record: {}", e.what());
      }
    }
  }
}

void ServeRecord::stop_flusher() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (flusher_.joinable()) flusher_.join();
}

void ServeRecord::finish(const MaskSets& masks, const std::vector<uint64_t>& rank_memory, int world_size) {
  stop_flusher();
  checkpoint_->flush();
  OutputFile& out = *out_;
  const hid_t root = out.root();
  {
    H5Handle requests = h5_create_group(root, "requests");
    if (checkpoint_->parts() > 0) {
      out.ensure_room(checkpoint_->bytes() + checkpoint_->bytes() / 8 + (1u << 20));
      checkpoint_->copy_into(requests.id());
    }
    H5G_info_t info{};
    if (H5Gget_info(requests.id(), &info) < 0 || info.nlinks != count_) {
      fail("{}: the record holds {} of the {} requests served; it is not moved into place (the checkpoint is kept)",
           options_.out, info.nlinks, count_);
    }
  }
  order_requests(root, count_, options_.out);
  const ModelConfig& config = model_->config;
  write_job_attributes(root, options_, config, *model_->placement, world_size, "serve");
  h5_attr_int(root, "request_count", static_cast<int64_t>(count_));
  h5_attr_string(root, "job_fingerprint", fingerprint_);
  h5_attr_int(root, "failed_request_count", static_cast<int64_t>(failed_));
  h5_attr_int(root, "request_counts", 1);
  write_totals(root, totals_, kClasses, tokens_, config);
  write_masks(root, masks.sets);
  write_ranks(root, *model_->placement, rank_memory);
  out.commit();
  checkpoint_->remove();
  checkpoint_.reset();
  spdlog::info("wrote {}: {} requests served", options_.out, count_);
}

}  // namespace mote
