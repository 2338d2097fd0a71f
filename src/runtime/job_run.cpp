// Steps 5 and 6 of a job (src/runtime/job.cpp): running requests over the
// ranks, and checking the expert counters afterwards.
#include <spdlog/spdlog.h>

#include <chrono>

#include "job_steps.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/model/moe_transformer.h"
#include "mote/util/error.h"

namespace mote {

JobRun::JobRun(const JobOptions& options, const MpiSession& mpi, const JobModel& model,
               const std::vector<ExpertMask>& masks)
    : options_(options),
      mpi_(mpi),
      model_(model),
      masks_(masks),
      processed_(static_cast<size_t>(options.coordinators),
                 ExpertCounters::pooled_classes(model.moe_layers(), model.config.n_routed_experts)),
      routed_(ExpertCounters::pooled_classes(model.moe_layers(), model.config.n_routed_experts)),
      routed_not_run_(routed_) {
  const ModelConfig& config = model.config;
  const WireFormat wire{config.hidden_size, config.num_experts_per_tok, parse_wire_dtype(options.wire_dtype)};
  worker_ = std::make_unique<ExpertWorker>(model.loaded->weights, config, *model.placement, mpi.rank(), wire,
                                           &processed_, &masks);
  exchange_ = std::make_unique<ExpertExchange>(MPI_COMM_WORLD, *model.placement, wire, *worker_);
  // The coordinators' own communicator, for handing out requests.
  MPI_Comm_split(MPI_COMM_WORLD, mpi.rank() < options.coordinators ? 0 : MPI_UNDEFINED, mpi.rank(),
                 &coordinators_comm_);
}

JobRun::~JobRun() {
  if (coordinators_comm_ != MPI_COMM_NULL) MPI_Comm_free(&coordinators_comm_);
}

int JobRun::run(std::vector<std::pair<size_t, GenerationRequest>> todo, const ResultHandler& on_done,
                const RequestFiller& fill, RequestInbox* inbox) {
  const int rank = mpi_.rank(), coordinators = options_.coordinators;
  const auto start = std::chrono::steady_clock::now();
  int stop_decided = 0;
  if (rank < coordinators) {
    GenerationOptions gen = options_.gen;
    gen.routing_counts = &routed_;
    gen.routed_not_run_counts = &routed_not_run_;
    gen.sample_vocab = model_.loaded->tokenizer.vocab_size();
    RequestQueue queue(coordinators_comm_, *exchange_, model_.moe_layers(), masks_, std::move(todo),
                       rank == 0 ? on_done : ResultHandler(), rank == 0 ? fill : RequestFiller(), options_.serving,
                       rank == 0 ? inbox : nullptr);
    gen.stop_requested = [&] { return queue.stopped(); };
    if (options_.serving) gen.on_token = [&](size_t id, const GenerationResult& r) { queue.sampled(id, r); };
    MoeTransformer transformer(model_.config, model_.loaded->weights, *exchange_);
    Generator generator(transformer, model_.loaded->eos_ids, gen);
    generator.run(queue, [&](size_t id, GenerationResult&& result) { queue.done(id, std::move(result)); });
    stats_ += generator.stats();
    queue.finish();
    stop_decided = queue.stop_signal();
    block_seconds_ += queue.block_seconds();
    if (rank == 0 && coordinators > 1) {
      std::string shares;
      for (int c = 0; c < coordinators; ++c)
        shares += (c ? ", " : "") + std::to_string(queue.ran_by()[static_cast<size_t>(c)]);
      spdlog::info("requests run per coordinator: {}", shares);
    }
  }
  while (exchange_->serve(true)) {
  }
  wall_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::debug(
      "rank {}: {} exchange rounds, {:.3f} s waiting in them, {:.3f} s computing experts, {:.3f} s in block starts, "
      "{:.3f} s in all",
      rank, exchange_->rounds(), exchange_->wait_seconds(), worker_->compute_seconds(), block_seconds_, wall_seconds_);
  return stop_decided;
}

ExpertCounters JobRun::check_counters() {
  // Each entry has one nonzero contributor (the expert's owner, or the
  // coordinator), so the sums are exact. The decisions whose experts did not
  // run (the last layer's, for rows that need no logits) are checked by
  // nothing but still counted in the totals.
  const int rank = mpi_.rank(), moe_layers = model_.moe_layers(), experts = model_.config.n_routed_experts;
  const auto sum_into_rank0 = [&](const ExpertCounters& mine, ExpertCounters& total) {
    const int count = static_cast<int>(mine.tokens.size());
    MPI_Reduce(mine.tokens.data(), total.tokens.data(), count, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(mine.gate_sum.data(), total.gate_sum.data(), count, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  };
  const ExpertCounters none = ExpertCounters::pooled_classes(moe_layers, experts);
  ExpertCounters all_routed(none), done(none), decided(none), not_run(none);
  for (int c = 0; c < options_.coordinators; ++c) {
    sum_into_rank0(processed_[static_cast<size_t>(c)], done);
    sum_into_rank0(rank == c ? routed_ : none, decided);
    sum_into_rank0(rank == c ? routed_not_run_ : none, not_run);
    if (rank != 0) continue;
    if (const auto diff = done.first_difference(decided)) {
      fail("expert counters reduced from the ranks disagree with coordinator {}'s routing record: {}", c, *diff);
    }
    for (size_t i = 0; i < all_routed.tokens.size(); ++i) {
      all_routed.tokens[i] += decided.tokens[i] + not_run.tokens[i];
      all_routed.gate_sum[i] += decided.gate_sum[i] + not_run.gate_sum[i];
    }
  }
  return all_routed;
}

namespace {

// What one coordinator's generator did, gathered on rank 0 for the summary.
struct CoordinatorStats {
  double prompt_tokens = 0, generated_tokens = 0, prefill_tokens = 0, prefill_seconds = 0, decode_tokens = 0,
         decode_seconds = 0, mixed_prompt_tokens = 0, mixed_generated_tokens = 0, mixed_seconds = 0, weight_bytes = 0,
         wait_seconds = 0;
};

double rate(double amount, double seconds) { return seconds > 0 ? amount / seconds : 0.0; }

}  // namespace

void JobRun::report_throughput() {
  const int coordinators = options_.coordinators;
  const CoordinatorStats mine{static_cast<double>(stats_.prompt_tokens),
                              static_cast<double>(stats_.generated_tokens),
                              static_cast<double>(stats_.prefill_tokens),
                              stats_.prefill_seconds,
                              static_cast<double>(stats_.decode_tokens),
                              stats_.decode_seconds,
                              static_cast<double>(stats_.mixed_prompt_tokens),
                              static_cast<double>(stats_.mixed_generated_tokens),
                              stats_.mixed_seconds,
                              static_cast<double>(stats_.weight_bytes),
                              exchange_->wait_seconds()};
  std::vector<CoordinatorStats> every(static_cast<size_t>(mpi_.size()));
  MPI_Gather(&mine, sizeof mine, MPI_BYTE, every.data(), sizeof mine, MPI_BYTE, 0, MPI_COMM_WORLD);
  if (mpi_.rank() != 0) return;
  every.resize(static_cast<size_t>(coordinators));
  CoordinatorStats sum;
  for (const auto& s : every) {
    sum.prompt_tokens += s.prompt_tokens;
    sum.generated_tokens += s.generated_tokens;
    sum.prefill_tokens += s.prefill_tokens;
    sum.decode_tokens += s.decode_tokens;
    sum.mixed_prompt_tokens += s.mixed_prompt_tokens;
    sum.mixed_generated_tokens += s.mixed_generated_tokens;
    // Coordinators run at the same time: each kind of step took as long as the longest.
    sum.prefill_seconds = std::max(sum.prefill_seconds, s.prefill_seconds);
    sum.decode_seconds = std::max(sum.decode_seconds, s.decode_seconds);
    sum.mixed_seconds = std::max(sum.mixed_seconds, s.mixed_seconds);
  }
  // Steps that fed only prompt tokens, only generated tokens, or both (a
  // prompt admitted while others decode): each rate over its own steps.
  std::string mixed;
  if (sum.mixed_seconds > 0) {
    mixed =
        fmt::format("; mixed steps: {} prompt + {} generated tokens in {:.3f} s ({:.1f} tokens/s)",
                    static_cast<int64_t>(sum.mixed_prompt_tokens), static_cast<int64_t>(sum.mixed_generated_tokens),
                    sum.mixed_seconds, rate(sum.mixed_prompt_tokens + sum.mixed_generated_tokens, sum.mixed_seconds));
  }
  spdlog::info("prefill: {} tokens in {:.3f} s ({:.1f} tokens/s); decode: {} tokens in {:.3f} s ({:.1f} tokens/s){}",
               static_cast<int64_t>(sum.prefill_tokens), sum.prefill_seconds,
               rate(sum.prefill_tokens, sum.prefill_seconds), static_cast<int64_t>(sum.decode_tokens),
               sum.decode_seconds, rate(sum.decode_tokens, sum.decode_seconds), mixed);
  spdlog::info(
      "job: {} prompt and {} generated tokens in {:.3f} s ({:.1f} prompt tokens/s, {:.1f} tokens/s in all) on {} "
      "coordinator{}",
      static_cast<int64_t>(sum.prompt_tokens), static_cast<int64_t>(sum.generated_tokens), wall_seconds_,
      rate(sum.prompt_tokens, wall_seconds_), rate(sum.prompt_tokens + sum.generated_tokens, wall_seconds_),
      every.size(), every.size() == 1 ? "" : "s");
  const double gigabytes = every[0].weight_bytes / 1e9;
  const double compute = every[0].prefill_seconds + every[0].decode_seconds + every[0].mixed_seconds;
  spdlog::info("weights streamed on rank 0: {:.2f} GB in {:.3f} s of compute ({:.2f} GB/s)", gigabytes, compute,
               rate(gigabytes, compute));
  if (every.size() > 1) {
    for (size_t c = 0; c < every.size(); ++c) {
      spdlog::info("coordinator {}: {} prompt and {} generated tokens; {:.3f} s waiting in exchanges", c,
                   static_cast<int64_t>(every[c].prompt_tokens), static_cast<int64_t>(every[c].generated_tokens),
                   every[c].wait_seconds);
    }
  }
}

}  // namespace mote
